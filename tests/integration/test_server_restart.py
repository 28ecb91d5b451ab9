"""`atomflow serve` killed with a thousand executions in flight (SIGKILL) and drained (SIGTERM):
after a restart on the same store every execution finishes, once, and the participant applied
each HTTP call's effect exactly once.

The participant counts every request by its Idempotency-Key. Before the kill it freezes its
answers and waits until every answer it already gave is in atomflow's journal; so the requests
it holds at the kill are exactly the calls in flight, and only those may arrive twice."""

import collections
import json
import os
import signal
import threading
import time
import unittest

from counting_participant import CountingParticipant
from server_harness import ServerTestCase, execution_id, journal_rows

EXECUTIONS = int(os.environ.get("ATOMFLOW_RESTART_EXECUTIONS", "1000"))
CALLS = 4  # HTTP actions per execution: first, reserve, publish, last
KILL_AT = 0.4  # the share of all calls the participant has seen when the server is killed
FINISH_TIMEOUT = 150  # seconds for every execution to finish after the restart

# One call, a nap that spreads the executions out, a transaction of two compensable calls
# (one slow), and a slow last call.
WORKFLOW = """
main:
  params: [args]
  steps:
    - first:
        call: http.post
        args:
          url: ${args.url + "/ok/first/" + args.tag}
          body: {n: '${args.n}'}
        result: a
    - nap:
        call: sys.sleep
        args:
          seconds: ${args.nap}
    - release:
        transaction:
          steps:
            - reserve:
                call: http.post
                args:
                  url: ${args.url + "/slow/0.2/reserve/" + args.tag}
                compensate:
                  call: http.post
                  args:
                    url: ${args.url + "/ok/unreserve/" + args.tag}
            - publish:
                call: http.post
                args:
                  url: ${args.url + "/ok/publish/" + args.tag}
                compensate:
                  call: http.post
                  args:
                    url: ${args.url + "/ok/unpublish/" + args.tag}
    - last:
        call: http.post
        args:
          url: ${args.url + "/slow/0.1/last/" + args.tag}
        result: z
    - done:
        return:
          n: ${args.n}
          tag: ${args.tag}
"""

ACTIONS = ["/ok/first/", "/slow/0.2/reserve/", "/ok/publish/", "/slow/0.1/last/"]
COMPENSATIONS = ["/ok/unreserve/", "/ok/unpublish/"]

# A slow call that is in flight at the SIGTERM (the drain waits for its answer), then a sleep
# the drain does not wait out: it must resume after the restart.
NAPPING = """
main:
  params: [args]
  steps:
    - before:
        call: http.post
        args:
          url: ${args.url + "/slow/1/before/" + args.tag}
    - nap:
        call: sys.sleep
        args:
          seconds: 8
    - after:
        call: http.post
        args:
          url: ${args.url + "/ok/after/" + args.tag}
    - done:
        return: ${args.tag}
"""


class ServerRestartTest(ServerTestCase):

    def setUp(self):
        super().setUp()
        self.participant = CountingParticipant()
        self.addCleanup(self.participant.stop)

    def start_many(self, client, workflow, arguments, threads=4):
        """Starts one execution per argument through the API; returns them in order."""
        started = [None] * len(arguments)
        failures = []

        def worker(indexes):
            for index in indexes:
                answer = client.post(f"/v1/workflows/{workflow}/executions",
                                     {"argument": json.dumps(arguments[index])})
                if answer.status != 200:
                    failures.append(answer)
                    return
                started[index] = answer.body

        workers = [threading.Thread(target=worker, args=(range(k, len(arguments), threads),))
                   for k in range(threads)]
        for thread in workers:
            thread.start()
        for thread in workers:
            thread.join()
        self.assertEqual(failures, [], "starting executions failed")
        return started

    def wait_none_active(self, client, workflow, timeout=FINISH_TIMEOUT):
        def none_active():
            answer = client.get(f"/v1/workflows/{workflow}/executions",
                                query={"filter": 'state="ACTIVE"', "pageSize": "1"})
            self.assertEqual(answer.status, 200, answer)
            return not answer.body.get("executions")
        self.wait_until(none_active, "every execution to finish", timeout=timeout, interval=0.5)

    def journaled_keys(self):
        """Idempotency keys (execution id / effect key) whose results are in the journal."""
        rows = journal_rows(self.store, "SELECT execution_id, key FROM journal "
                                        "WHERE kind = 'result'")
        return {f"{execution}/{key}" for execution, key in rows}

    def freeze_and_kill(self, server):
        """Holds the participant's answers, waits until every answer it gave is journaled,
        kills the server (SIGKILL) and returns the requests it held: the calls in flight."""
        self.participant.freeze()
        deadline = time.monotonic() + 60
        while True:
            answered = self.participant.answered_keys()
            missing = answered - self.journaled_keys() if self.participant.settled() else None
            if missing == set():
                break
            if time.monotonic() > deadline:
                self.fail(f"{len(missing or [])} answered calls never reached the journal, "
                          f"e.g. {sorted(missing or [])[:3]}")
            time.sleep(0.1)
        in_flight = self.participant.unanswered()
        self.assertEqual(server.kill(), -signal.SIGKILL)
        self.participant.thaw()
        return in_flight

    def test_sigkill_with_a_thousand_executions_in_flight(self):
        server = self.start_server(log_format="json")
        api = server.client()
        self.deploy(api, "work", WORKFLOW)
        arguments = [{"url": self.participant.url, "tag": f"e{n}", "n": n,
                      "nap": (n % 25) * 0.25} for n in range(EXECUTIONS)]
        started = self.start_many(api, "work", arguments)
        total = EXECUTIONS * CALLS
        self.assertTrue(self.participant.wait_for("/", int(total * KILL_AT), timeout=120),
                        f"the participant saw only {self.participant.count()} calls")

        in_flight = self.freeze_and_kill(server)
        seen = self.participant.count()
        self.assertLess(seen, total, "every call was made before the kill: nothing to test")
        active = [row for row in journal_rows(
            self.store, "SELECT id FROM executions WHERE state = 'ACTIVE'")]
        self.assertTrue(active, "no execution was in flight at the kill")

        server.start()
        api = server.client()
        self.wait_none_active(api, "work")
        executions = self.list_all(api, "/v1/workflows/work/executions", "executions")
        states = collections.Counter(e["state"] for e in executions)
        self.assertEqual(states, {"SUCCEEDED": EXECUTIONS}, states)
        self.assertEqual(sorted(e["name"] for e in executions),
                         sorted(e["name"] for e in started))
        for execution in executions:
            argument = json.loads(execution["argument"])
            self.assertEqual(json.loads(execution["result"]),
                             {"n": argument["n"], "tag": argument["tag"]})

        self.assert_applied_once(in_flight)
        self.assert_finished_once(server, started)

    def assert_applied_once(self, in_flight):
        """Every action's effect applied once, no compensation ran, and only the calls held
        at the kill arrived a second time (with the same key)."""
        problems = []
        for n in range(EXECUTIONS):
            for prefix in ACTIONS:
                if self.participant.applications(f"{prefix}e{n}") != 1:
                    problems.append((f"{prefix}e{n}", self.participant.applications(
                        f"{prefix}e{n}")))
            for prefix in COMPENSATIONS:
                if self.participant.paths()[f"{prefix}e{n}"]:
                    problems.append((f"{prefix}e{n}", "compensated"))
        self.assertEqual(problems[:20], [], f"{len(problems)} effects not applied once")

        held_keys = {request.key for request in in_flight}
        repeats = {key: count for key, count in self.participant.counts_by_key().items()
                   if count > 1}
        extra = sum(count - 1 for count in repeats.values())
        self.assertLessEqual(extra, len(in_flight),
                             f"{extra} repeated requests, {len(in_flight)} were in flight")
        self.assertEqual([key for key in repeats if key not in held_keys], [],
                         "a call answered before the kill was made again")
        self.assertEqual([key for key, count in repeats.items() if count > 2], [])
        self.assertEqual(len(self.participant.counts_by_key()), EXECUTIONS * CALLS)

    def assert_finished_once(self, server, started):
        """No execution's lifecycle reached its end twice in the two processes' logs."""
        finished = collections.Counter()
        for event in server.log_events():
            text = json.dumps(event)
            if "execution.finished" in text:
                finished[event.get("execution")] += 1
        ids = {execution_id(e) for e in started}
        twice = [key for key, count in finished.items() if key in ids and count > 1]
        self.assertEqual(twice, [], "executions that finished twice")

    def test_sigterm_drains_and_the_restart_finishes_everything(self):
        server = self.start_server()
        api = server.client()
        self.deploy(api, "nap", NAPPING)
        count = 20
        started = self.start_many(api, "nap", [{"url": self.participant.url, "tag": f"d{n}"}
                                               for n in range(count)])
        self.assertTrue(self.participant.wait_for("/slow/1/before/", count))

        self.assertEqual(server.stop(), 0, server.log_text()[-3000:])
        states = collections.Counter(row[0] for row in journal_rows(
            self.store, "SELECT state FROM executions"))
        self.assertEqual(states, {"ACTIVE": count}, "the drain should leave the naps ACTIVE")
        self.assertEqual(self.participant.count("/ok/after/"), 0)

        server.start()
        api = server.client()
        self.wait_none_active(api, "nap")
        executions = self.list_all(api, "/v1/workflows/nap/executions", "executions")
        self.assertEqual(collections.Counter(e["state"] for e in executions),
                         {"SUCCEEDED": count})
        self.assertEqual(sorted(e["name"] for e in executions),
                         sorted(e["name"] for e in started))
        # The drain waited for the slow calls' answers: none is made again.
        for n in range(count):
            self.assertEqual(self.participant.paths()[f"/slow/1/before/d{n}"], 1)
            self.assertEqual(self.participant.applications(f"/ok/after/d{n}"), 1)


if __name__ == "__main__":
    unittest.main()
