"""A loopback TCP proxy the chaos harness controls.

One Proxy runs one thread with a select() loop; it serves any number of
Links.  A Link is one listening port on 127.0.0.1 forwarding to an
upstream (host, port); each replica gets its own Link so that one replica
can be cut off while the others still reach the store.

  link.partition()  silent partition: no byte moves in either direction and
                    nothing is closed; connections made meanwhile complete in
                    the kernel's backlog but are not served.  The peer can
                    only notice through its own timeouts.
  link.heal()       forwarding resumes; bytes held in the kernel buffers
                    during the partition are delivered late, as TCP would
                    after a partition heals.
  link.reset()      every connection is closed at once with an RST.

Standard library only.
"""
import select
import socket
import struct
import threading
import time

BUF = 256 * 1024


class _Pair:
    def __init__(self, client, upstream):
        self.c = client
        self.u = upstream
        self.c2u = bytearray()
        self.u2c = bytearray()
        self.c_eof = False
        self.u_eof = False


def _rst_close(s):
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        s.close()
    except OSError:
        pass


class Link:
    def __init__(self, proxy, upstream):
        self.proxy = proxy
        self.upstream = upstream
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(64)
        self.lsock.setblocking(False)
        self.port = self.lsock.getsockname()[1]
        self.partitioned = False
        self.pairs = []
        self.resets = 0

    def set_upstream(self, upstream):
        with self.proxy.lock:
            self.upstream = upstream

    def partition(self):
        with self.proxy.lock:
            self.partitioned = True

    def heal(self):
        with self.proxy.lock:
            self.partitioned = False
        self.proxy.wake()

    def reset(self):
        with self.proxy.lock:
            self.resets += 1  # performed by the loop thread
        self.proxy.wake()


class Proxy:
    def __init__(self):
        self.lock = threading.Lock()
        self.links = []
        self.stopping = False
        self.rw, self.ww = socket.socketpair()
        self.rw.setblocking(False)
        self.thread = threading.Thread(target=self._run, name="chaos-proxy", daemon=True)
        self.thread.start()

    def link(self, upstream):
        l = Link(self, upstream)
        with self.lock:
            self.links.append(l)
        self.wake()
        return l

    def wake(self):
        try:
            self.ww.send(b"x")
        except OSError:
            pass

    def stop(self):
        self.stopping = True
        self.wake()
        self.thread.join(5)
        for l in self.links:
            for p in l.pairs:
                _rst_close(p.c)
                if p.u:
                    _rst_close(p.u)
            l.lsock.close()

    # ---- the loop thread ----

    def _close_pair(self, link, p, rst=False):
        for s in (p.c, p.u):
            if s is None:
                continue
            if rst:
                _rst_close(s)
            else:
                try:
                    s.close()
                except OSError:
                    pass
        if p in link.pairs:
            link.pairs.remove(p)

    def _accept(self, link):
        while True:
            try:
                c, _ = link.lsock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            u = socket.socket()
            u.settimeout(1.0)
            try:
                u.connect(link.upstream)
            except OSError:
                # The store is down: the client sees its connection closed.
                u.close()
                _rst_close(c)
                continue
            for s in (c, u):
                s.setblocking(False)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            link.pairs.append(_Pair(c, u))

    def _run(self):
        while not self.stopping:
            rl, wl = [self.rw], []
            owners = {}
            with self.lock:
                links = list(self.links)
                todo_reset = []
                for l in links:
                    if l.resets:
                        todo_reset.append(l)
                        l.resets = 0
            for l in todo_reset:
                for p in list(l.pairs):
                    self._close_pair(l, p, rst=True)
            for l in links:
                if l.partitioned:
                    continue
                rl.append(l.lsock)
                owners[l.lsock] = (l, None)
                for p in l.pairs:
                    if not p.c_eof and len(p.c2u) < BUF:
                        rl.append(p.c)
                    if not p.u_eof and len(p.u2c) < BUF:
                        rl.append(p.u)
                    if p.c2u:
                        wl.append(p.u)
                    if p.u2c:
                        wl.append(p.c)
                    owners[p.c] = (l, p)
                    owners[p.u] = (l, p)
            try:
                r, w, _ = select.select(rl, wl, [], 0.05)
            except (OSError, ValueError):
                # A socket was closed under us; rebuild the lists.
                time.sleep(0.01)
                continue
            if self.rw in r:
                try:
                    while self.rw.recv(4096):
                        pass
                except (BlockingIOError, OSError):
                    pass
            for s in r:
                if s is self.rw or s not in owners:
                    continue
                l, p = owners[s]
                if l.partitioned:
                    continue
                if p is None:
                    self._accept(l)
                    continue
                if p not in l.pairs:
                    continue
                try:
                    data = s.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    self._close_pair(l, p, rst=True)
                    continue
                if s is p.c:
                    if data:
                        p.c2u += data
                    else:
                        p.c_eof = True
                else:
                    if data:
                        p.u2c += data
                    else:
                        p.u_eof = True
            for s in w:
                if s not in owners:
                    continue
                l, p = owners[s]
                if p is None or p not in l.pairs or l.partitioned:
                    continue
                buf = p.c2u if s is p.u else p.u2c
                try:
                    n = s.send(buf)
                    del buf[:n]
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError:
                    self._close_pair(l, p, rst=True)
            # A side that ended closes the pair once what it sent is delivered.
            for l in links:
                if l.partitioned:
                    continue
                for p in list(l.pairs):
                    if (p.c_eof and not p.c2u) or (p.u_eof and not p.u2c):
                        self._close_pair(l, p)
