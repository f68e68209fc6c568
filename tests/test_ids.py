"""Ids of turns, messages and stream events: the shapes the API shows, and unique."""

from __future__ import annotations

import os
import re

from actors.ids import new_id


def test_ids_have_the_prefix_and_sixteen_hex_digits_by_default():
    assert re.fullmatch(r"evt-[0-9a-f]{16}", new_id("evt-"))
    assert re.fullmatch(r"chat-[0-9a-f]{12}", new_id("chat-", 12))


def test_ids_do_not_repeat():
    ids = {new_id("msg-") for _ in range(200_000)}
    assert len(ids) == 200_000
    # all 64 bits vary, not only a counter's low digits
    assert len({i[4:8] for i in ids}) > 60_000


def test_a_forked_child_does_not_repeat_its_parents_ids():
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: send its next id, leave at once
        os.write(write, new_id("evt-").encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    assert child != new_id("evt-")
