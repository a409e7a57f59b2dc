#!/bin/sh
# eddy postremove: deb postrm ($1 = remove | purge | upgrade | ...) and rpm
# %postun ($1 = 0 on erase, 1 on upgrade).
# Only a deb purge deletes the state (/var/lib/eddy) and the eddy user; dpkg
# itself deletes /etc/eddy/config.yaml on purge. rpm has no purge: an erase
# keeps both, as is usual for rpm.
set -e

case "$1" in
purge)
	rm -rf /var/lib/eddy
	rmdir /etc/eddy 2>/dev/null || true
	if getent passwd eddy >/dev/null; then
		userdel eddy >/dev/null 2>&1 || true
	fi
	if getent group eddy >/dev/null; then
		groupdel eddy >/dev/null 2>&1 || true
	fi
	;;
esac

case "$1" in
remove | purge | 0)
	if [ -d /run/systemd/system ]; then
		systemctl daemon-reload >/dev/null 2>&1 || true
	fi
	;;
esac
exit 0
