# shellcheck shell=bash
# lib.sh — shell helpers shared by the scripts in this folder (sourced, not run).
# Deadlines are multiplied by PH_TIMEOUT_MULT (default 1) for slow machines and sanitizer builds.

PH_TIMEOUT_MULT=${PH_TIMEOUT_MULT:-1}

die() { echo "${0##*/}: $*" >&2; exit 1; }

# scaled SECONDS: SECONDS × PH_TIMEOUT_MULT, as a whole number (at least 1).
scaled() { awk -v s="$1" -v m="$PH_TIMEOUT_MULT" 'BEGIN { v = int(s * m + 0.999); print (v < 1 ? 1 : v) }'; }

# wait_for SECONDS WHAT CMD...: run CMD every 0.1 s until it succeeds; fail with WHAT after the scaled deadline.
wait_for() {
    local what=$2 deadline=$((SECONDS + $(scaled "$1")))
    shift 2
    until "$@"; do
        ((SECONDS < deadline)) || { echo "${0##*/}: timed out waiting for $what" >&2; return 1; }
        sleep 0.1
    done
}

# wait_ready SECONDS WHAT PID LOG CMD...: like wait_for, but fail at once, showing the end of LOG,
# if process PID (the thing being waited for) exits.
wait_ready() {
    local what=$2 pid=$3 log=$4 deadline=$((SECONDS + $(scaled "$1")))
    shift 4
    until "$@"; do
        alive "$pid" || { tail -n 30 "$log" >&2; echo "${0##*/}: $what exited during start-up (log: $log)" >&2; return 1; }
        ((SECONDS < deadline)) || { tail -n 30 "$log" >&2; echo "${0##*/}: $what not ready in time (log: $log)" >&2; return 1; }
        sleep 0.1
    done
}

# alive PID: the process exists and is not a zombie (PID 1 may not reap orphans). A zombie leader
# whose other threads are still exiting counts as alive: they may still hold its sockets open.
alive() {
    local state tasks
    state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null) || return 1
    tasks=(/proc/"$1"/task/*)
    [[ $state != Z* ]] || ((${#tasks[@]} > 1))
}
dead() { ! alive "$1"; }

# port_open PORT: something accepts TCP on 127.0.0.1:PORT.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# free_port: an unused TCP port on 127.0.0.1 (as chosen by the kernel).
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# cpu_ticks PID: user + system CPU time of the process so far, in clock ticks (/proc/PID/stat
# fields 14 and 15; the command name in field 2 has no spaces here)
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# pid_of PIDFILE PATTERN: the pid in PIDFILE if that process is alive and its command line contains
# PATTERN (so a stale pid file never makes us signal an unrelated process); fails otherwise.
pid_of() {
    local pid
    pid=$(cat "$1" 2>/dev/null) && [[ $pid =~ ^[0-9]+$ ]] && alive "$pid" &&
        tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$2" && echo "$pid"
}

# stop_pid PID SECONDS: SIGTERM (and SIGCONT, in case it was paused), wait up to the scaled deadline, then SIGKILL.
stop_pid() {
    kill -TERM "$1" 2>/dev/null || return 0
    kill -CONT "$1" 2>/dev/null || true
    wait_for "$2" "pid $1 to exit" dead "$1" && return 0
    echo "${0##*/}: pid $1 ignored SIGTERM, sending SIGKILL" >&2
    kill -KILL "$1" 2>/dev/null || true
    wait_for 10 "pid $1 to die" dead "$1"
}
