#!/bin/sh
# eddy preremove: deb prerm ($1 = remove | upgrade | deconfigure |
# failed-upgrade) and rpm %preun ($1 = 0 on erase, 1 on upgrade).
# Removing stops the service (SIGTERM: final checkpoint); an upgrade leaves
# it to postinstall's try-restart.
set -e

case "$1" in
remove | deconfigure | 0)
	if [ -d /run/systemd/system ]; then
		systemctl stop eddy.service >/dev/null 2>&1 || true
		systemctl disable eddy.service >/dev/null 2>&1 || true
	fi
	;;
esac
exit 0
