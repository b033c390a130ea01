#!/bin/sh
# Runs a command as if on its own host: in a private mount (and UTS) namespace, with the
# host name NAME and an empty tmpfs over each DIR, so that what it writes there is seen by
# nobody else and is gone when it stops (a Celery worker that shares no disk).
#
#   unshare --mount --uts --propagation private -- sh private_folders.sh NAME DIR... -- COMMAND...
#
# Needs root (or CAP_SYS_ADMIN): tests/deployment checks `unshare` first and falls back to
# distinct directories per worker when it is not permitted.
set -eu
hostname "$1"
shift
while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do
    mkdir -p "$1"
    mount -t tmpfs -o size=512m,mode=0755 "recon-private" "$1"
    shift
done
shift
exec "$@"
