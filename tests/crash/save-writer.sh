#!/bin/sh
# crash-loop.sh WRITER for morsel images: runs save_writer (from --files)
# on the disk.  save_writer prints "DURABLE full G" and "DURABLE chain G K".
exec /test/files/save_writer /mnt/disk
