# CPU time from /proc, in clock ticks (getconf CLK_TCK per second), for the bench scripts.
# Sourced: `. bench/proc-cpu.sh`.

# utime + stime of the given processes, summed (a process that is gone counts 0).
process_ticks() {
  local t=0 p
  for p in "$@"; do
    [ -r "/proc/$p/stat" ] && t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat")))
  done
  echo "$t"
}

# utime + stime of the store's SQLite writer thread in the given processes (the thread named
# countersign-sqlite-writer, which the kernel cuts to 15 characters).
writer_ticks() {
  local t=0 p task
  for p in "$@"; do
    for task in /proc/"$p"/task/*; do
      [ "$(cat "$task/comm" 2>/dev/null)" = countersign-sql ] &&
        t=$((t + $(awk '{print $14 + $15}' "$task/stat")))
    done
  done
  echo "$t"
}

# The whole machine: "BUSY IDLE" (busy: user, nice, system, irq, softirq, steal; idle: idle, iowait).
machine_ticks() {
  awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9, $5 + $6}' /proc/stat
}
