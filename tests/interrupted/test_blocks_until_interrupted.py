"""Run by tests/test_cleanup.py in a child pytest, which interrupts it."""

from conformance.targets import Target


def test_blocks_until_interrupted(target: Target) -> None:
    print(f"READY {target.name}", flush=True)
    # deadline-bounded: the parent interrupts long before it passes
    target.wait_until(lambda: False, 300, what="an interrupt from the parent test")
