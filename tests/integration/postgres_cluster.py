"""A throwaway PostgreSQL cluster for integration tests: initdb in a temporary folder, its own
loopback port, max_prepared_transactions set so that two-phase commit works."""

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time


def server_bin_dir():
    majors = [name for name in os.listdir("/usr/lib/postgresql")
              if os.path.exists(f"/usr/lib/postgresql/{name}/bin/initdb")]
    return f"/usr/lib/postgresql/{max(majors, key=int)}/bin"


class PostgresCluster:
    """A throwaway cluster; as root it runs as the `postgres` user, which PostgreSQL requires."""

    def __init__(self):
        self.root = tempfile.mkdtemp(prefix="atomflow-sqlit-")
        as_root = os.geteuid() == 0
        user = pwd.getpwnam("postgres") if as_root else None
        if user:
            os.chown(self.root, user.pw_uid, user.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"] if user else []
        bin_dir = server_bin_dir()
        subprocess.run(prefix + [f"{bin_dir}/initdb", "-D", f"{self.root}/data", "-U",
                                 "postgres", "--auth=trust", "--no-sync"],
                       check=True, capture_output=True)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]

        def demote():
            if user:
                os.setgid(user.pw_gid)
                os.setuid(user.pw_uid)

        self.log = open(f"{self.root}/server.log", "w", encoding="utf-8")
        self.process = subprocess.Popen(
            [f"{bin_dir}/postgres", "-D", f"{self.root}/data", "-p", str(self.port),
             "-k", self.root, "-c", "listen_addresses=127.0.0.1",
             "-c", "max_prepared_transactions=32", "-c", "fsync=off"],
            stdout=self.log, stderr=self.log, preexec_fn=demote)
        for _ in range(200):
            if self.query("postgres", "SELECT 1", check=False) == "1":
                return
            time.sleep(0.05)
        raise RuntimeError(f"PostgreSQL did not start; see {self.root}/server.log")

    def uri(self, database):
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def query(self, database, sql, check=True):
        done = subprocess.run(["psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", "-d",
                               self.uri(database), "-c", sql],
                              capture_output=True, text=True, check=False)
        if check and done.returncode != 0:
            raise AssertionError(f"psql {sql!r}: {done.stderr}")
        return done.stdout.strip()

    def stop(self):
        self.process.send_signal(signal.SIGINT)
        self.process.wait(timeout=30)
        self.log.close()
        shutil.rmtree(self.root, ignore_errors=True)
