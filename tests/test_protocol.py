"""The leaky-protocol demonstration of notebook 04."""
from __future__ import annotations

import pytest

from esc50kit import protocol
from esc50kit.data import load_metadata
from esc50kit.profiles import get_profile


def test_leakage_demo_flags_the_leak_and_is_kept_by_its_inputs(synthetic_root, tmp_path,
                                                                monkeypatch, torch_one_thread):
    df = load_metadata(synthetic_root)
    kw = dict(recipe=get_profile("tiny"), artifacts_dir=tmp_path, epochs=1, seed=0)
    first = protocol.leakage_demo(df, **kw)
    assert list(first["audit"]) == ["PASSED", "FAILED: augmented copy, fold, src_file"]
    assert first["test accuracy"].between(0, 1).all()

    def no_training(*args, **kwargs):
        raise AssertionError("trained again although nothing changed")

    monkeypatch.setattr(protocol, "_train_and_score", no_training)
    again = protocol.leakage_demo(df, **kw)  # read back, not retrained
    assert again.to_dict() == first.to_dict()
    with pytest.raises(AssertionError, match="trained again"):  # other inputs: trains
        protocol.leakage_demo(df, **{**kw, "seed": 1})
