"""A job whose slot takes nothing stops its agent reading that job's upstream, while the
other jobs of the same agent connection go on at full speed.

The engine never stalls a slot (its merge takes events as they come, and a slow client
only makes them larger), so the consumer that takes nothing here is the provider's own
stream, read by the test the way a slot reads it: it takes one event and stops.
"""

from __future__ import annotations

from contextlib import aclosing

import trio

from providers import ChatRequest, Message
from providers.agent.pool import WINDOW, Job
from providers.events import TextDelta

from ..support.upstream import Script, Seen, openai_chunk, openai_script, sse
from .conftest import Lab, answering

CHUNK = sse(openai_chunk("x" * 4000), done=False)[0]  # one event of 4000 characters
ANSWER = 25_000  # chunks: about 100 MB, far more than every buffer on the way holds
WORDS = [f"w{i} " for i in range(300)]
GAP = 0.005  # seconds between the second job's tokens: 1.5 s in all


def scripts(seen: Seen) -> Script:
    if seen.json["model"] == "big":
        return Script(body=[CHUNK] * ANSWER + [b"data: [DONE]\n\n"])
    return openai_script(WORDS, gap=GAP)


async def blocked(seen: Seen, job: Job, quiet: float = 0.5) -> int:
    """The upstream's bytes out, once the agent has sent ``job`` its whole window and they
    have not grown for ``quiet`` seconds: it is blocked in sending (10 s at most)."""
    with trio.fail_after(10):
        while True:
            before = seen.bytes_sent
            await trio.sleep(quiet)
            if seen.bytes_sent == before and job.window.outstanding == WINDOW:
                return before


async def test_a_stalled_job_pauses_its_upstream_and_not_the_other_jobs(lab: Lab) -> None:
    lab.upstream.respond = answering(scripts, ["big", "small"])
    await lab.start_agent("--models", "big,small")
    await lab.until_models({"big", "small"})
    ask = ChatRequest("big", (Message("user", "write a lot"),))
    async with aclosing(lab.pool.stream(ask)) as stalled:
        first = await stalled.__anext__()  # one event taken, then nothing
        assert first == TextDelta("x" * 4000)
        big = await lab.upstream.wait_for_request(1)
        assert big.json["model"] == "big"
        (job,) = (j for link in lab.pool.links for j in link.jobs.values())
        blocked_at = await blocked(big, job)  # the agent used its window, no more
        print(f"upstream blocked after {blocked_at} bytes of {len(CHUNK) * ANSWER}")
        assert blocked_at < len(CHUNK) * ANSWER / 10  # far below the answer's size

        start = trio.current_time()
        with trio.fail_after(10):
            events = await lab.run("lab/small")  # the same agent, the same socket
        took = trio.current_time() - start
        print(f"the other job took {took:.2f} s for {len(WORDS) * GAP:.2f} s of tokens")
        assert "".join(d["text"] for _, kind, d in events if kind == "delta") == "".join(WORDS)
        assert took < 2 * len(WORDS) * GAP + 1.5  # at the upstream's pace, not held up
        assert big.bytes_sent == blocked_at  # still blocked: nothing read meanwhile
        assert big.closed_at is None
    with trio.fail_after(5):  # closing the stalled job cancels it: the upstream sees it
        await big.closed.wait()
