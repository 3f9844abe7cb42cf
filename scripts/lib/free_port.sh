# Sourced by the test and benchmark scripts: free_port prints a loopback TCP port that was
# free a moment ago (the kernel's pick), for a process the script starts next.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
