#!/bin/sh
# Stands in for pg_dump in the backup-fails drill: the connection drops part-way through.
"@REAL_BIN@/pg_dump" "$@" | head -c 4096
echo "pg_dump: error: Dumping the contents of table \"orders\" failed: server closed the connection unexpectedly" >&2
exit 1
