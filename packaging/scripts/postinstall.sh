#!/bin/sh
# eddy postinstall: deb postinst ($1 = configure, $2 = previous version or
# empty) and rpm %post ($1 = 1 on install, 2 on upgrade). Idempotent.
set -e

user=eddy
state=/var/lib/eddy
conf=/etc/eddy/config.yaml

if ! getent group "$user" >/dev/null; then
	groupadd --system "$user"
fi
if ! getent passwd "$user" >/dev/null; then
	nologin=/usr/sbin/nologin
	[ -x "$nologin" ] || nologin=/sbin/nologin
	useradd --system --gid "$user" --home-dir "$state" --no-create-home \
		--shell "$nologin" --comment "eddy stream processor" "$user"
fi

# State: created once, owned by eddy; never emptied here.
if [ ! -d "$state" ]; then
	mkdir -p "$state"
fi
chown "$user:$user" "$state"
chmod 0750 "$state"

# The configuration may hold secrets (mqtt.password, http.token).
if [ -f "$conf" ]; then
	chgrp "$user" "$conf"
	chmod 0640 "$conf"
fi

upgrade=false
case "$1" in
configure) [ -n "$2" ] && upgrade=true ;;
2) upgrade=true ;;
esac

# Without systemd as init (containers, chroots, CI) there is nothing to tell.
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
	if $upgrade; then
		# Restarts only a running eddy: SIGTERM takes a final checkpoint,
		# the new version restores it.
		systemctl try-restart eddy.service >/dev/null 2>&1 || true
	else
		systemctl enable eddy.service >/dev/null 2>&1 || true
	fi
fi

if ! $upgrade; then
	echo "eddy: edit $conf (appliance_id, mqtt.broker, the pipeline), then: systemctl start eddy"
fi
exit 0
