"""Redis Sentinel: a master, a replica and three sentinels, all real.  The
master dies; the sentinels promote the replica; the controllers follow the
new master and leadership resumes with no overlap."""
import os
import shutil
import subprocess
import tempfile
import time


from lease_helpers import Cluster, RedisServer, check_no_overlap
from conftest import free_port, wait_until


class Sentinel:
    def __init__(self, master_port):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="hl-sentinel-")
        conf = os.path.join(self.dir, "sentinel.conf")
        with open(conf, "w") as f:
            f.write("port %d\nbind 127.0.0.1\ndir %s\n"
                    "sentinel monitor mymaster 127.0.0.1 %d 2\n"
                    "sentinel down-after-milliseconds mymaster 800\n"
                    "sentinel failover-timeout mymaster 4000\n"
                    "sentinel parallel-syncs mymaster 1\n" % (self.port, self.dir, master_port))
        exe = shutil.which("redis-sentinel") or shutil.which("redis-server")
        assert exe, "redis-sentinel is required: make deps"
        args = [exe, conf] if exe.endswith("redis-sentinel") else [exe, conf, "--sentinel"]
        self.log = open(os.path.join(self.dir, "log"), "wb")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)



def test_sentinel_failover(controller_factory):
    master = RedisServer()
    replica = RedisServer(extra=["--replicaof", "127.0.0.1", str(master.port)])
    sentinels = [Sentinel(master.port) for _ in range(3)]
    try:
        time.sleep(1.0)
        addrs = ", ".join("'127.0.0.1:%d'" % s.port for s in sentinels)
        config = ("redis:\n  sentinel:\n    masterName: mymaster\n    addrs: [%s]\n" % addrs)
        cfgdir = tempfile.mkdtemp(prefix="hl-sentcfg-")
        cfgpath = os.path.join(cfgdir, "config.yaml")
        with open(cfgpath, "w") as f:
            f.write(config)
        cl = Cluster(controller_factory, master, n=3,
                     extra_env={"HIGHLANDER_CONFIG": cfgpath, "HIGHLANDER_REDIS_ADDR": "unused:1"})
        leader = cl.wait_one_leader(timeout=15)
        token = leader.get_json("/status")[1]["data"]["fencingToken"]
        time.sleep(1.0)
        master.kill()
        # Sentinels need ~1 s to agree and a moment to promote the replica.
        def new_leader():
            ls = cl.leaders()
            return len(ls) == 1 and ls[0].get_json("/status")[1]["data"]["fencingToken"] > token
        wait_until(new_leader, 40, lambda: "\n".join(c.log()[-2000:] for c in cl.replicas), interval=0.1)
        assert replica.cmd("ROLE").splitlines()[0] == "master"
        time.sleep(1.0)
        assert len(cl.leaders()) == 1
        for c in cl.alive():
            assert c.get_json("/status")[1]["data"]["dbConnected"] is True
        check_no_overlap(cl.log_path)
        assert any("master" in c.log() and "sentinel" in c.log() for c in cl.replicas)
    finally:
        for s in sentinels:
            s.stop()
        replica.stop()
        master.stop()
