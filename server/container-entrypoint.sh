#!/bin/sh
# The container's entry point. A volume mounted at /data belongs to root (fly.io mounts them so):
# as root, hand /data to the relay's own user, then run the relay as that user, with no
# privilege left. Started as another user already, just run the relay.
set -eu
relay=/usr/local/bin/peerchat-server
if [ "$(id -u)" = 0 ]; then
    mkdir -p /data
    chown -R peerchat:peerchat /data
    exec setpriv --reuid=peerchat --regid=peerchat --clear-groups -- "$relay" "$@"
fi
exec "$relay" "$@"
