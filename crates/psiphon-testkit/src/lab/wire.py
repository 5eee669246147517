# The lab's delay line, for kernels without tc netem: copies Ethernet frames between two
# interfaces of the router namespace (AF_PACKET), each one `delay_ms` later, in order.
# Usage: python3 -c "$WIRE" IF_A IF_B DELAY_MS
import collections
import socket
import sys
import threading
import time

ETH_P_ALL = 3
PACKET_OUTGOING = 4


def open_raw(ifname):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.bind((ifname, 0))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    return s


def pump(src, dst, delay):
    queue = collections.deque()
    ready = threading.Condition()

    def send():
        while True:
            with ready:
                while not queue:
                    ready.wait()
                due, frame = queue[0]
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
                continue
            with ready:
                queue.popleft()
            try:
                dst.send(frame)
            except OSError:
                pass

    threading.Thread(target=send, daemon=True).start()
    while True:
        frame, addr = src.recvfrom(65535)
        if addr[2] == PACKET_OUTGOING:
            continue
        with ready:
            queue.append((time.monotonic() + delay, frame))
            ready.notify()


def main():
    a, b, delay_ms = sys.argv[1], sys.argv[2], float(sys.argv[3])
    sa, sb = open_raw(a), open_raw(b)
    print("wire ready", flush=True)
    threading.Thread(target=pump, args=(sa, sb, delay_ms / 1000.0), daemon=True).start()
    pump(sb, sa, delay_ms / 1000.0)


main()
