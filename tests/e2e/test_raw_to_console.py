"""From the hospital's interfaces to the pharmacist: on the suite `make run` starts, an IMNM
diagnosis sent as FHIR and a statin order sent as HL7 v2 (with `imnm send-raw`) become a
critical statin alert on the console's worklist, explained; a FHIR body weight and a prednisone
order in mg/kg become a Pneumocystis prophylaxis alert that names the weight it used, and a
methotrexate order in tablets with its give strength a dose alert in mg; a prednisone taper
written as one FHIR order is judged step by step, each step at its own time, a dose split
into morning and night instructions by its daily total, and an HL7 v2 pulse of 3 doses ends;
the medication list taken on admission (FHIR MedicationStatements) shows the home statin, and its
home prednisone is not added to the inpatient order that continues it."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from running_suite import RunningSuite, suite_env

from imnm_tracker.testing import free_port, imnm_executable

pytestmark = pytest.mark.integration
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "raw"


def test_hl7_and_fhir_in_statin_alert_on_the_worklist(tmp_path: Path) -> None:
    console = f"http://127.0.0.1:{free_port()}"
    env = suite_env(
        console_port=console.rsplit(":", 1)[1], tracker_metrics_port=str(free_port()),
        ingest_metrics_port=str(free_port()), tracker_data_dir=str(tmp_path / "tracker"),
        tracker_timer_interval_seconds="2", tracker_app_id=f"imnm-e2e-raw-{os.getpid()}",
        topic_partitions="3",
    )
    suite = RunningSuite(tmp_path, env)
    try:
        bootstrap = suite.wait_until_up()
        for flag, example in (("--fhir", "imnm-diagnosis.fhir.json"),
                              ("--hl7v2", "statin-order-and-ck.hl7"),
                              ("--hl7v2", "methotrexate-order-v23-and-ck-above-range.hl7"),
                              ("--fhir", "weight-and-prednisone-mg-per-kg.fhir.json"),
                              ("--fhir", "prednisone-taper-in-one-order.fhir.json"),
                              ("--fhir", "prednisone-split-dose.fhir.json"),
                              ("--fhir", "imnm-diagnosis-mrn-2004.fhir.json"),
                              ("--hl7v2", "methylprednisolone-pulse-then-prednisone.hl7"),
                              ("--fhir", "medication-list-on-admission.fhir.json")):
            sent = subprocess.run(
                [*imnm_executable(), "send-raw", flag, str(EXAMPLES / example),
                 "--bootstrap", bootstrap],
                env=env, capture_output=True, timeout=60, check=False)
            assert sent.returncode == 0, sent.stderr.decode()
        wanted = {"statin_active", "pjp_prophylaxis_missing", "methotrexate_dose_above_range"}
        found = _alerts_of(console, "MRN-2001", wanted, state="needs_action", within=90)
        assert found, "no alert for MRN-2001 on the console within 90 s:\n" + suite.printed()
        statin = [a for a in found if a["rule"] == "statin_active"]
        assert len(statin) == 1, found
        assert statin[0]["severity"] == "critical"
        assert "atorvastatin" in statin[0]["summary"].lower()
        assert statin[0]["evidence"]  # the converted events behind it, by their HL7/FHIR ids
        assert all(e.startswith(("hl7v2:", "fhir:")) for e in statin[0]["evidence"])
        [pjp] = [a for a in found if a["rule"] == "pjp_prophylaxis_missing"]
        assert pjp["detail"].startswith("Glucocorticoid 72 mg/day prednisone-equivalent"), pjp
        assert "body weight of 72 kg on 2025-01-09" in pjp["detail"]
        assert "fhir:Observation/wt-2001/1" in pjp["evidence"]
        # 30 tablets of 2.5 mg (the give strength in RXO-18/19): 75 mg a week
        [methotrexate] = [a for a in found if a["rule"] == "methotrexate_dose_above_range"]
        assert methotrexate["summary"].startswith("Methotrexate 75 mg per dose"), methotrexate
        # A taper written as one FHIR order (60 mg for 28 days, then 40, 30, 20, 15, 10 mg):
        # each step is taken at its own time, so the first reduction is judged on its day and
        # the bone review quotes the last step's dose.
        taper = _alerts_of(console, "MRN-2002", {"taper_too_fast", "bone_protection_review"})
        [too_fast] = [a for a in taper if a["rule"] == "taper_too_fast"]
        assert too_fast["summary"] == "Glucocorticoid taper too fast: 60 to 40 mg/day", too_fast
        assert too_fast["raised_at"].startswith("2025-03-03T11:00:00"), too_fast
        [bone] = [a for a in taper if a["rule"] == "bone_protection_review"]
        assert bone["detail"].startswith("Glucocorticoid 10 mg/day prednisone-equivalent now")
        assert not [a for a in taper if a["rule"] == "pjp_prophylaxis_missing"]  # on SMX-TMP
        # 15 mg every morning and 10 mg at night (concurrent instructions): 25 mg/day, so
        # Pneumocystis prophylaxis is due; the morning dose alone would stay below 20 mg/day.
        split = _alerts_of(console, "MRN-2003", {"pjp_prophylaxis_missing"})
        [pjp_split] = [a for a in split if a["rule"] == "pjp_prophylaxis_missing"]
        assert pjp_split["detail"].startswith(
            "Glucocorticoid 25 mg/day prednisone-equivalent now"), pjp_split
        # methylprednisolone 1000 mg IV daily, 3 doses (TQ1-14), then prednisone 60 mg: the
        # pulse is over, so 60 mg/day now; read as open it was 1,250 + 60 = 1,310 mg/day.
        pulse = _alerts_of(console, "MRN-2004", {"calcium_vitamin_d_missing"})
        [calcium] = [a for a in pulse if a["rule"] == "calcium_vitamin_d_missing"]
        assert calcium["detail"].startswith(
            "Glucocorticoid 60 mg/day prednisone-equivalent now"), calcium
        # The medication list on admission: atorvastatin at home is a critical alert worded as
        # the patient's own; the home prednisone 20 mg continued as an inpatient order is
        # 20 mg/day, not 40; calcium with vitamin D at home is cover.
        listed = _alerts_of(console, "MRN-2005", {"statin_active", "pjp_prophylaxis_missing"})
        [home_statin] = [a for a in listed if a["rule"] == "statin_active"]
        assert home_statin["summary"] == (
            "Statin on the medication list (atorvastatin 40 mg tablet) in a patient with IMNM"
        ), home_statin
        assert "fhir:MedicationStatement/home-atorvastatin-2005/1" in home_statin["evidence"]
        [pjp_listed] = [a for a in listed if a["rule"] == "pjp_prophylaxis_missing"]
        assert pjp_listed["detail"].startswith(
            "Glucocorticoid 20 mg/day prednisone-equivalent now"), pjp_listed
        assert not [a for a in listed if a["rule"] == "calcium_vitamin_d_missing"], listed
    finally:
        code = suite.stop()
    assert code == 0, suite.printed()
    suite.assert_nothing_left()


def _alerts_of(console: str, patient_id: str, wanted: set[str], *, state: str = "all",
               within: float = 60) -> list[dict]:
    """The patient's alerts in ``state`` once ``wanted`` rules are among them, or what there is
    after ``within`` seconds."""
    found: list[dict] = []
    deadline = time.monotonic() + within
    while not wanted <= {a["rule"] for a in found} and time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(
                f"{console}/api/alerts?state={state}&patient_id={patient_id}", timeout=10
            ) as response:
                found = json.loads(response.read())["alerts"]
        except OSError:
            pass
        time.sleep(1)
    return found
