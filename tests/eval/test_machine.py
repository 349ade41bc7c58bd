"""A benchmark report names the CPU it ran on and whether that CPU has the bf16 matrix units that decide
``precision: auto``, so that a table read later says which kind of machine measured it."""

from s2dit.eval.machine import cpu_name, machine


def test_a_cpu_report_names_the_cpu_and_its_bf16_units(monkeypatch):
    monkeypatch.setenv("S2DIT_CPU_BF16", "1")
    assert machine("cpu")["bf16_matrix_units"] is True
    monkeypatch.setenv("S2DIT_CPU_BF16", "0")
    report = machine("cpu")
    assert report["bf16_matrix_units"] is False and report["threads"] >= 1
    assert report["device"] == cpu_name() and report["device"].strip() and report["device"] != "cpu"
