"""Shared fixtures: run the real CLI in a subprocess, make real distributions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, env: dict[str, str] | None = None, check: bool = False):
    """Run `python -m edgeret ARGS` as a user would; returns CompletedProcess."""
    full_env = {**os.environ, **(env or {})}
    full_env.pop("EDGERET_DEBUG", None)
    proc = subprocess.run(
        [sys.executable, "-m", "edgeret", *args],
        capture_output=True, text=True, env=full_env, timeout=120,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"edgeret {' '.join(args)} failed: {proc.stderr}")
    return proc


def run_cli_json(*args: str, env: dict[str, str] | None = None):
    proc = run_cli(*args, "--json", env=env, check=True)
    return json.loads(proc.stdout)


def make_distribution(site: Path, dist: str, entry_points: dict[str, str], modules: dict[str, str]):
    """Write a real installed distribution (dist-info + modules) into `site`.

    importlib.metadata finds it when `site` is on sys.path / PYTHONPATH, exactly
    as it finds a pip-installed plugin.
    """
    site.mkdir(parents=True, exist_ok=True)
    for name, source in modules.items():
        (site / f"{name}.py").write_text(textwrap.dedent(source))
    info = site / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    lines = "\n".join(f"{k} = {v}" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[edgeret]\n{lines}\n")
    return site


def _lines(text: str) -> frozenset[str]:
    return frozenset(line.split("#")[0].strip() for line in text.splitlines()) - {""}


# The slow tier: scenario tests (real processes, sockets, exports, training runs, whole CLI round trips).
# `make test` runs everything; `make test-fast` runs `-m "not slow"`. Derived from one measured full run
# (`nice -n 10 pytest -q --durations=0 -p no:randomly` on 2 busy cores, 640 tests, 631 s): a test
# function is slow when any of its cases took >= 0.5 s; a file is slow as a whole when two thirds of its
# functions are, or when its module fixtures export bundles (test_export*.py); then the fast tier's own
# --durations: three codec fine-tuning tests (torch training steps, >= 1.8 s each) and a denoise-oct CLI
# round trip (10 s). New tests start fast; a test that needs a subprocess, a server or a model export
# belongs in these lists or gets `@pytest.mark.slow`.
SLOW_FILES = _lines('''
test_cli_paths.py
test_denoise_oct_export.py
test_export.py
test_export_codec.py
test_exporters.py
test_grey_exports.py
test_hub_backends.py
test_hub_cameras.py
test_hub_db.py
test_hub_declared_size.py
test_hub_hangups.py
test_hub_metrics.py
test_hub_pacs.py
test_hub_shutdown.py
test_hub_store_safety.py
test_hub_workers.py
test_runtime_without_torch.py
test_third_party_plugin.py
test_upload.py
test_upload_cli_errors.py
test_upload_tls.py
test_vendor_telemetry.py
''')
SLOW_TESTS = _lines('''  # file::function, every parameter set
test_backends.py::test_backend_matches_torch
test_codec.py::test_bad_streams_fail_in_one_line_without_output
test_codec.py::test_cli_prints_size_bpp_ratio_and_time
test_codec.py::test_cli_round_trip
test_codec.py::test_encode_decode_do_not_import_torch
test_codec.py::test_image_border_decodes_as_well_as_the_inside
test_codec.py::test_symbols_recovered_exactly_torch_and_onnxruntime
test_codec_finetune.py::test_lowpass_term_sees_slow_colour_drift_that_ms_ssim_barely_does
test_codec_finetune.py::test_natural_photos_leave_out_the_benchmark_retina
test_codec_finetune.py::test_the_new_point_is_trained_and_the_export_adds_none
test_codec_finetune.py::test_trained_lowest_point_starts_at_the_extrapolated_gains
test_codec_finetune.py::test_the_lowpass_weight_enters_the_training_loss
test_codec_finetune.py::test_widening_keeps_the_decoded_image_and_the_bitstream
test_codec_scale.py::test_cli_encode_scale_and_decode_to_the_original_size
test_codec_scale.py::test_high_rates_and_detailed_images_stay_full_scale
test_codec_scale.py::test_oversampled_photo_at_a_low_rate_is_coded_at_half_scale_and_beats_full_scale
test_datasets.py::test_data_synth_writes_a_whole_dataset_or_a_one_line_error
test_denoise.py::test_runtime_path_is_torch_free
test_denoise.py::test_smoke_train
test_denoise.py::test_tiled_equals_whole_and_no_seams
test_denoise_oct_real.py::test_any_size_through_the_cli_and_exact_tiles
test_denoise_oct_real.py::test_shipped_model_improves_a_real_scan
test_denoise_oct_real.py::test_tiny_training_run_on_the_layout
test_devices.py::test_devices_cli_json_and_show_alias
test_devices.py::test_malformed_profile_through_cli_is_one_line
test_devices.py::test_unknown_device_lists_known_ones
test_devices.py::test_user_profile_clashing_alias_is_rejected
test_devices.py::test_user_profile_dir_via_option_and_env
test_dr_grade.py::test_cli_run_reports_grade_or_retake
test_dr_grade.py::test_onnx_matches_torch_and_sees_severe_disease
test_export_inputs.py::test_image_to_image_task_exports_with_a_psnr_gate
test_fundus_phantoms.py::test_black_outside_the_field_of_view
test_fundus_phantoms.py::test_defaults_are_drawn_from_the_seed
test_fundus_phantoms.py::test_degradations_are_visible
test_host.py::test_a_plugins_broken_device_profile_is_reported_and_skipped
test_host.py::test_broken_plugin_is_reported_and_skipped
test_host.py::test_duplicate_task_name_is_an_error_naming_both
test_host.py::test_plugins_can_be_disabled_by_env_and_option
test_host.py::test_trace_env_prints_hook_calls
test_host.py::test_unknown_task_lists_known_ones
test_hub_dicom.py::test_accepted_answers_basic_auth_and_duplicate
test_hub_dicom.py::test_http_answers_are_classified
test_hub_dicom.py::test_hub_modules_import_without_pydicom
test_hub_dicom.py::test_no_answer_is_transient
test_hub_dicom.py::test_pacs_down_is_transient_and_the_same_store_succeeds_after_restart
test_hub_hardening.py::test_connections_over_the_cap_get_503_with_retry_after_and_threads_stay_bounded
test_hub_hardening.py::test_health_counts_come_from_the_database_not_from_listing_folders
test_hub_hardening.py::test_slow_loris_connections_are_cut_at_the_request_deadline_and_others_still_served
test_quality_fundus.py::test_cli_nonretinal_is_poor_and_oct_is_refused
test_quality_fundus.py::test_committed_model_grades_fresh_phantoms
test_quality_fundus.py::test_eval_reports_paper_rows_the_shipped_operating_point_and_its_curve
test_quality_fundus.py::test_onnx_model_matches_torch_weights
test_quality_oct.py::test_colour_fundus_photo_is_rejected_with_one_line
test_quality_oct.py::test_one_epoch_train_and_eval_smoke
test_quality_oct.py::test_onnx_gives_the_same_grade_as_torch
test_quality_oct.py::test_run_json_gives_grade_and_sublabels
test_real_training.py::test_train_mixes_real_and_phantom_folders_with_patient_level_folds
test_sr.py::test_cli_upscale_and_run
test_sr.py::test_tiled_equals_whole
''')


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        function = getattr(item, "originalname", item.name)  # without the [param] id
        if item.path.name in SLOW_FILES or f"{item.path.name}::{function}" in SLOW_TESTS:
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def site_dir(tmp_path: Path) -> Path:
    return tmp_path / "site"


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory: pytest.TempPathFactory):
    """A real Orthanc with DICOMweb for the whole session; skips when it is not installed."""
    from orthanc_server import orthanc_missing_reason, start_orthanc

    reason = orthanc_missing_reason()
    if reason and os.environ.get("CI"):  # `make test` installs it; in CI a skip would hide a broken set-up
        pytest.fail(f"CI: {reason} (tools/install_orthanc.sh should have installed it)")
    if reason:
        pytest.skip(reason)
    server = start_orthanc(tmp_path_factory.mktemp("orthanc"))
    try:
        yield server
    finally:
        server.stop()
