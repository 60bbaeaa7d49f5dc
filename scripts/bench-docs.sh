# Shared by the bench scripts, which source it: how the machine is
# described, how a table is put into docs/BENCHMARKS.md, and how the server
# a script started is stopped.

# machine describes this machine: cores, CPU model, memory and Go version.
machine() {
  echo "$(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), $(free -g | awk '/Mem:/ {print $2}') GiB, $(go version | cut -d' ' -f3)"
}

# write_block NAME TEXT puts TEXT between the NAME:start and NAME:end
# markers of docs/BENCHMARKS.md, or appends it with them.
write_block() {
  local block
  block=$(printf '<!-- %s:start -->\n%s\n<!-- %s:end -->' "$1" "$2" "$1")
  BLOCK="$block" NAME="$1" perl -0777 -i -pe 's/<!-- \Q$ENV{NAME}\E:start -->.*?<!-- \Q$ENV{NAME}\E:end -->/$ENV{BLOCK}/s or $_ .= "\n$ENV{BLOCK}\n"' docs/BENCHMARKS.md
  echo "table written to docs/BENCHMARKS.md"
}

# stop_server stops the server whose process id is in server_pid, if any,
# and waits for it.
stop_server() {
  if [ -n "${server_pid:-}" ]; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=
  fi
}
