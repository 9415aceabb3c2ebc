#!/bin/sh
# The backend's entrypoint: runs its command (the server, or the worker).
set -e
exec "$@"
