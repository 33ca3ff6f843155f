"""``frcnn.bench.timing``: rounds interleave every run; warm-up rounds are run but not kept."""

from frcnn.bench.timing import interleaved_times, medians


def test_rounds_interleave_the_runs_and_keep_the_timed_ones():
    calls = []
    runs = {group: {name: (lambda key=(group, name): calls.append(key)) for name in ("a", "b")} for group in ("x", "y")}
    times = interleaved_times(runs, warmup=1, timed=2)
    one_round = [("x", "a"), ("x", "b"), ("y", "a"), ("y", "b")]
    assert calls == one_round * 3
    assert {group: {name: len(t) for name, t in members.items()} for group, members in times.items()} == {
        "x": {"a": 2, "b": 2}, "y": {"a": 2, "b": 2}}  # fmt: skip
    assert all(t >= 0 for members in times.values() for ts in members.values() for t in ts)


def test_medians_keep_the_keys():
    times = {"train": {"ours": [3.0, 1.0, 2.0], "theirs": [4.0, 6.0]}}
    assert medians(times) == {"train": {"ours": 2.0, "theirs": 5.0}}
