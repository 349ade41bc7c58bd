"""A benchmark report names the CPU it ran on, its measured bf16 matmul speed-up and whether that makes
``precision: auto`` pick bf16, so that a table read later says which kind of machine measured it."""

from s2dit.eval.machine import cpu_name, machine


def test_a_cpu_report_names_the_cpu_and_its_bf16_speed(monkeypatch):
    monkeypatch.setenv("S2DIT_CPU_BF16", "1")
    assert machine("cpu")["bf16_auto"] is True
    monkeypatch.setenv("S2DIT_CPU_BF16", "0")
    report = machine("cpu")
    assert report["bf16_auto"] is False and report["threads"] >= 1 and report["bf16_speedup"] > 0
    assert report["device"] == cpu_name() and report["device"].strip() and report["device"] != "cpu"
