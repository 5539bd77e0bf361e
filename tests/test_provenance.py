"""Package versions recorded in manifests and model sidecars."""

from importlib import metadata

from cellcompare.provenance import package_versions


def test_versions_follow_the_cpu_wheel_alias_and_mark_missing_packages():
    out = package_versions(["numpy", "xgboost", "no-such-package-xyz"], missing="absent")
    assert list(out) == ["numpy", "xgboost", "no-such-package-xyz"]
    assert out["numpy"] == metadata.version("numpy")
    assert out["xgboost"] == metadata.version("xgboost-cpu")  # installed under its CPU name
    assert out["no-such-package-xyz"] == "absent"
    assert package_versions(["no-such-package-xyz"]) == {"no-such-package-xyz": None}
