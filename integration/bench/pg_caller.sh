#!/usr/bin/env bash
# Drives a command line the way PostgreSQL drives archive_command / restore_command: one
# `/bin/sh -c LINE` after the other, %p and %f substituted, as the user running it (the
# benchmark runs this as postgres). Prints one line per call, "<ns> <rc> <ok>", then
# "wall <ns>" for the whole sequence.
#   pg_caller.sh archive LINE NAMES WALDIR backlog|single RSSFILE
#       %p = WALDIR/<name>; backlog: every .ready exists up front; single: a segment's
#       .ready appears just before its call (no backlog). After a success the .ready
#       becomes .done, as the archiver does.
#   pg_caller.sh restore LINE NAMES DESTDIR SRCDIR RSSFILE
#       %p = DESTDIR/RECOVERYXLOG; after each call the file is compared with SRCDIR/<name>
#       and removed (standing in for replay, outside the call's time).
# Every call runs under /usr/bin/time, whose peak RSS goes to RSSFILE (all rows alike).
set -u
mode=$1 line=$2 names=$3
stamp() { printf -v "$1" '%s000' "${EPOCHREALTIME/./}"; }
stamp w0
while read -r name; do
    if [ "$mode" = archive ]; then
        dir=$4 kind=$5 rss=$6
        [ "$kind" = single ] && : >"$dir/archive_status/$name.ready"
        cmd=${line//%p/$dir/$name}; cmd=${cmd//%f/$name}
        stamp t0; /usr/bin/time -a -o "$rss" -f %M /bin/sh -c "$cmd" </dev/null >/dev/null 2>>"$rss.err"; rc=$?; stamp t1
        [ $rc = 0 ] && [ -e "$dir/archive_status/$name.ready" ] && mv "$dir/archive_status/$name.ready" "$dir/archive_status/$name.done"
        echo "$((t1 - t0)) $rc 1"
    else
        dest=$4 src=$5 rss=$6
        cmd=${line//%p/$dest/RECOVERYXLOG}; cmd=${cmd//%f/$name}
        stamp t0; /usr/bin/time -a -o "$rss" -f %M /bin/sh -c "$cmd" </dev/null >/dev/null 2>>"$rss.err"; rc=$?; stamp t1
        ok=0; cmp -s "$dest/RECOVERYXLOG" "$src/$name" && ok=1
        rm -f "$dest/RECOVERYXLOG"
        echo "$((t1 - t0)) $rc $ok"
    fi
done <"$names"
stamp w1
echo "wall $((w1 - w0))"
