"""Start real TensorFlow as soon as the oracle's tests are collected: its import and its
programs (~10 s of CPU) then overlap the rest of the suite instead of adding to it."""
import oracle_harness


def pytest_collection_modifyitems(session, config, items):
    if any("tf_oracle/" in item.nodeid for item in items):
        oracle_harness.start_tf()
