"""Mutation testing report (`make mutants`): mutmut over every module of study/, loaders/, analysis/ and
rundir/, each with the fast tests aimed at it (TESTS), one mutmut run per module.

Each module has its own work dir under .mutants/ (git-ignored): a copy of the work tree (tracked and
untracked-not-ignored files) beside mutmut's mutants/ folder, so mutmut's config never touches the checkout and
its verdicts survive a stopped run: the next run tests only the mutants without one (new, in a function that
changed, or not reached before --timeout). Writes the killed share per module, with the sha256 of the source
it was measured on, and every mutant that was not killed (with its diff and, where judged harmless, why) to
bench/results/mutants.json; an entry whose source has changed since is marked stale.

    python scripts/mutants.py                       # every module whose entry is not current, one after another
    python scripts/mutants.py study/losses.py       # some of them: the others keep their entries in the file
    python scripts/mutants.py study/losses.py --survivors   # after adding tests: re-run the listed survivors only

Modules take minutes to hours each on 2 cores: run it niced in the background, and again to resume.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from importlib.metadata import version

import mutmut as mutmut_pkg
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "results" / "mutants.json"
WORK = REPO / ".mutants"  # one mutmut work dir per module, kept (git-ignored) so that a run resumes where one stopped
RECHECKED = "rechecked.json"
# What the tests read beside the code, copied into mutmut's mutants/ folder (tests/test_reproduction.py reads the
# committed docs/reproduction.md; others the deploy templates and the README)
ALSO_COPY = ["errors", "loaders", "study", "analysis", "bench", "rundir", "tests", "docs", "deploy", "cluster.yaml",
             "README.md", "Makefile", "constraints.txt"]
MUTMUT = [sys.executable, "-m", "mutmut"]
TESTED = "tests.sha256"  # the tests the verdicts in a work dir were last checked against
# Module -> the fast test files aimed at it (none is marked slow): every module of study/, loaders/, analysis/
# and rundir/ (bench/ measures, it is not mutated; tests/test_mutants.py keeps this list whole). Each mutant
# runs the tests of these files that call the function it changed: the files that train a net (minutes) go
# only where no quicker test reaches the code.
TESTS = {
    # the modules the first report measured
    # test_noise_human.py is left to the suite: it builds FFCV pipelines (47 s), and the fast file reaches its functions
    "loaders/noise.py": ["tests/test_noise_values.py", "tests/test_noise.py", "tests/test_noise_structured.py",
                         "tests/test_noise_white.py"],
    "study/losses.py": ["tests/test_losses.py"],
    "study/train.py": ["tests/test_train_values.py", "tests/test_train.py", "tests/test_fused.py"],
    "analysis/summary.py": ["tests/test_summary_values.py", "tests/test_analysis.py", "tests/test_replicates.py", "tests/test_claims_table.py",
                            "tests/test_val_split.py"],
    "analysis/claims.py": ["tests/test_claims_rules.py", "tests/test_analysis.py", "tests/test_claims_table.py", "tests/test_noise_human.py"],
    "analysis/bands.py": ["tests/test_claims_table.py", "tests/test_analysis.py"],
    "analysis/effects.py": ["tests/test_effects.py", "tests/test_claims_table.py", "tests/test_analysis.py", "tests/test_noise_human.py"],
    "analysis/clean_counts.py": ["tests/test_claims_table.py", "tests/test_analysis.py"],
    "analysis/lr_trend.py": ["tests/test_lr_trend.py", "tests/test_claims_table.py", "tests/test_analysis.py"],
    # study/
    "study/groups.py": ["tests/test_groups.py"],
    "study/pack.py": ["tests/test_pack.py"],
    "study/slices.py": ["tests/test_slices.py"],
    "study/storage.py": ["tests/test_storage.py", "tests/test_grid_extra.py", "tests/test_data_root.py"],
    "study/cost.py": ["tests/test_cost.py"],
    "study/trainable.py": ["tests/test_trainable.py"],
    "study/config.py": ["tests/test_config.py", "tests/test_preflight.py", "tests/test_slices.py",
                        "tests/test_grid_extra.py", "tests/test_storage.py"],
    "study/grid.py": ["tests/test_grid_extra.py", "tests/test_config.py"],
    "study/trial.py": ["tests/test_trial.py"],  # one group at the smallest scale: the training tests take minutes
    "study/models.py": ["tests/test_models.py", "tests/test_models_structure.py"],
    "study/cluster.py": ["tests/test_cluster.py", "tests/test_launch.py", "tests/test_preflight.py"],
    "study/experiments.py": ["tests/test_experiments_fit.py", "tests/test_experiments.py", "tests/test_launch.py"],
    "study/preflight.py": ["tests/test_preflight.py", "tests/test_launch.py"],
    "study/launch.py": ["tests/test_launch_branches.py", "tests/test_launch_inprocess.py", "tests/test_launch_run.py", "tests/test_launch.py", "tests/test_preflight.py", "tests/test_slices.py"],
    "study/watch.py": ["tests/test_watch.py"],
    "study/console.py": ["tests/test_console.py"],
    "study/tune_progress.py": ["tests/test_console.py"],
    "study/local.py": ["tests/test_launch_inprocess.py", "tests/test_local_runner.py"],
    "study/provenance.py": ["tests/test_rundir_files.py", "tests/test_reproduction.py"],
    # loaders/
    "loaders/annotations.py": ["tests/test_annotations.py"],
    "loaders/folder.py": ["tests/test_folder.py"],
    # its own fast file (2 s) reaches every function: the others that call check() and build() train nets or build
    # FFCV pipelines (test_val_split's smoke study alone takes 33 s), minutes for each mutant that survives
    "loaders/data.py": ["tests/test_data_values.py"],
    "loaders/tensor.py": ["tests/test_tensor.py"],
    "loaders/datasets.py": ["tests/test_datasets_values.py", "tests/test_data_sources.py", "tests/test_loaders.py", "tests/test_folder.py"],
    "loaders/backends.py": ["tests/test_backends.py", "tests/test_loaders.py", "tests/test_folder.py"],
    # their own fast files only: test_loaders.py and test_noise_human.py compile FFCV pipelines with numba (minutes
    # for mutmut's record of which tests call what, again for its clean run), and these files reach every function
    "loaders/beton.py": ["tests/test_beton_values.py"],
    "loaders/ffcv_loader.py": ["tests/test_ffcv_loader_values.py"],
    "loaders/ffcv_ops.py": ["tests/test_ffcv_ops_values.py"],
    "loaders/torch_loader.py": ["tests/test_torch_loader.py", "tests/test_loaders.py"],
    # analysis/
    "analysis/intervals.py": ["tests/test_claims_table.py"],
    "analysis/power.py": ["tests/test_power_scenarios.py", "tests/test_claims_power.py"],
    "analysis/figures.py": ["tests/test_figures_values.py", "tests/test_figures.py", "tests/test_analysis.py", "tests/test_replicates.py",
                            "tests/test_val_split.py"],
    "analysis/report.py": ["tests/test_val_split.py", "tests/test_analysis.py"],
    "analysis/reproduction.py": ["tests/test_reproduction.py"],
    "analysis/describe.py": ["tests/test_results_describe.py"],
    "analysis/coverage.py": ["tests/test_coverage.py", "tests/test_reproduction.py"],
    # rundir/
    "rundir/__init__.py": ["tests/test_rundir_files.py", "tests/test_pack.py"],
    "rundir/pack.py": ["tests/test_pack.py"],
}
# Tests left out of a module's run (pytest -k): those that run numba-compiled copies of the module's own functions
# (loaders.ffcv_ops compiles noise's hash), which numba cannot compile once mutmut has made them trampolines.
DESELECT = {"loaders/noise.py": "not numba and not identical_across_backends"}
# torch is not fork-safe once it has run: mutmut's forkserver forks clean workers. It is warmed by importing
# the third-party libraries only (no import per mutant); the project's modules are imported in each worker,
# since some run code at import (e.g. claims.CLAIMS is built by threshold()) that a mutant must reach.
# timeout_constant: a mutant's wall-clock limit is (its tests' time + this) * 15 s; mutmut's 1 s lets a worker
# that imports the project and collects its tests on a loaded machine time out with no mutant to blame.
SETTINGS = {"process_isolation": "forkserver", "forkserver_warmup": "import", "timeout_constant": 10}
# ffcv too: its import takes 5 to 12 s here, which each worker of loaders.beton/ffcv_* paid per mutant
PRELOAD = ["numpy", "pandas", "torch", "torchvision", "matplotlib", "matplotlib.pyplot", "omegaconf", "hydra", "PIL.Image",
           "numba", "ffcv.loader", "ffcv.writer", "ffcv.reader", "ffcv.fields.decoders", "ffcv.transforms"]
PYTEST_ARGS = ["-p", "no:cacheprovider", "-q", "-x", "-m", "not slow", "-W", "ignore"]
KILLED = {"killed", "killed on recheck"}
TARGET = 0.85  # killed share of the non-equivalent mutants, per module
# called by no test in-process (at import: claims.CLAIMS; or in a subprocess), or timed out, which on this loaded
# machine may be slowness, not a mutant that hangs
RECHECK = {"no tests", "timeout"}
# Functions run at import (building claims.CLAIMS; config.duration builds the rules of Config's class body): mutmut
# links them to whichever test was running then, so their survivors were tested by the wrong tests; they are
# rechecked as "no tests" ones are
AT_IMPORT = ("analysis.clean_counts.x_threshold__", "analysis.effects.x_level__", "analysis.effects.x_kind_gap__",
             "study.config.x_duration__")

_SQUARE = "equivalent: noise distributions are square, (m, m) or (K, m, m), so this index also gives m"
_DTYPE = "equivalent: targets() passes float32 tables, eye's default dtype; the 0/1 entries are exact in any dtype"
_DEVICE = ("equivalent on a CPU; on CUDA a CPU tensor here fails: tests/test_gpu_present.py::"
           "test_h_alpha_targets_on_cuda_equal_cpu kills it where CUDA is visible")
_RENORM = ("equivalent: the rows of ((1 + alpha) T - I) / alpha already sum to 1 (to 1e-16), and the last line only "
           "renormalises against rounding: any positive row scale cancels in it, and dividing, multiplying or "
           "broadcasting by sums of 1 changes nothing")
_FLOAT = "equivalent: n_crit is float64 already, and astype(None) is float64"
_CPU_ONLY = ("equivalent on a CPU (the device given is the CPU either way); on CUDA it would mix devices: "
             "tests/test_gpu_present.py::test_tensor_loader_on_cuda_equals_cpu kills it where CUDA is visible")
_DROPNA = "equivalent: pandas reads groupby's dropna for truth, so None keeps NaN keys as False does"
_SAME_FACTOR = "equivalent: cpu_factor() computed again (from the same tables) gives the same factor"
_INT_DTYPE = "equivalent: confusion counts are integers either way; argsort orders them the same"
# Survivors judged harmless (by mutant name, as mutmut 3.8.1 names them for the current code), and why.
_NO_CONFIG_INDEX = "equivalent: an index column kept with no config column is dropped by out[columns] next"
_EMPTY_X = "equivalent: plot([], fmt) draws the same empty legend key as plot([], [], fmt)"
_N_CRIT_FLOAT = "equivalent: every n_crit is a float64 or float(...) already, and an empty list defaults to float64"
_ALIGN = "equivalent: bilinear interpolate turns align_corners=None into False"
_BROADCAST = "equivalent: a (3, 1, 1) view broadcasts against (N, 3, H, W) as (1, 3, 1, 1) does"
_SETDIFF = "equivalent: setdiff1d takes its values and dtype from the first argument (an int64 arange); the empty held set's dtype is unread"
_TIES = "equivalent: the ranks are an arange plus a random float per class, never tied, so every sort kind orders them alike (numpy accepts 'STABLE')"
_SEEDS_INT64 = "equivalent: seeds are Python ints in [0, 2**32) (NoiseSpec checks), which numpy stores as int64 without a dtype"
_NON_BLOCKING = "equivalent: ffcv's ToDevice defaults to non_blocking=True"
_DOWNLOAD_NONE = "equivalent: a missing data.download read as None, not False: every reader tests it for truth only"
_N_VAL_MESSAGE = ("equivalent: the message is never shown: check_val and the config rule let through only 1 <= n_val < n, "
                  "which stratified_subset never refuses")
_INT64_DEFAULT = "equivalent: numpy's default integer is int64 on 64-bit Linux, the only platform FFCV and the suite run on"
_NO_DRAW = ("equivalent: integers(1) is always 0 and draws no random bits, so gcd(0, n) = n != 1 sends the loop to the "
            "original's own first draw")
_NAN = 'equivalent: float("NAN") and float("nan") are the same value'
_KB_2D = "equivalent: the tensor is (K, B) in both nets (logits are (K, B, m), labels (K, B)), so dim 1 is dim -1"
_CONVERGED = ("equivalent: mu and sigma are stored in float32, and at the 1e-12 tolerances they no longer change in float32 "
              "(checked on 222 (mean, std) pairs with std from 0.1 to 0.97 of its bound)")
JUDGED = {
    "study.losses.x_label_distribution__mutmut_2": _SQUARE, "study.losses.x_label_distribution__mutmut_3": _SQUARE,
    "study.losses.x_label_distribution__mutmut_7": _DTYPE, "study.losses.x_label_distribution__mutmut_10": _DTYPE,
    "study.losses.x_label_distribution__mutmut_8": _DEVICE, "study.losses.x_label_distribution__mutmut_11": _DEVICE,
    "study.losses.x_targets__mutmut_12": _DEVICE, "study.losses.x_targets__mutmut_14": _DEVICE,
    "loaders.noise.x_copy_distribution__mutmut_2": _SQUARE, "loaders.noise.x_copy_distribution__mutmut_7": _RENORM,
    "loaders.noise.x_copy_distribution__mutmut_20": _RENORM, "loaders.noise.x_copy_distribution__mutmut_24": _RENORM,
    "loaders.noise.x_copy_distribution__mutmut_26": _RENORM,
    "loaders.noise.x_structured_distribution__mutmut_32": "equivalent: every off-diagonal entry of the uniform target is u (m >= 3 is checked before)",
    "loaders.noise.x_thresholds__mutmut_45": "equivalent: for m = 1 the exact-rational table is [0, 2**32] too",
    "loaders.noise.x_thresholds__mutmut_59": _INT64_DEFAULT, "loaders.noise.x_thresholds__mutmut_61": _INT64_DEFAULT,
    "loaders.noise.x_spread__mutmut_9": "equivalent: for n = 1, start already equals n_virtual, the next test's exit",
    "loaders.noise.x_spread__mutmut_19": _NO_DRAW, "loaders.noise.x_spread__mutmut_21": _NO_DRAW,
    "loaders.noise.x_spread__mutmut_39": "equivalent: integers(n) is integers(0, n), the same call",
    **{f"loaders.noise.xǁWhiteNoiseǁ__init____mutmut_{i}": _CONVERGED for i in (28, 29, 32)},
    "loaders.noise.xǁWhiteNoiseǁ__init____mutmut_19": ("harmless: the cap's value, not its logic: only a channel "
                                                      "whose fixed point settles on exactly round 10,001 (a std within ~1e-4 of its bound) tells them apart"),
    "analysis.summary.x_critical_clean__mutmut_10": _FLOAT,
    "analysis.summary.x_t975__mutmut_5": _NAN,
    "analysis.summary.x_critical_points__mutmut_14": "equivalent: np.log of the n_clean index gives float64 whatever its dtype",
    "analysis.summary.x_critical_points__mutmut_15": "equivalent: accuracies are float64 already",
    "analysis.figures.x_human__mutmut_100": "equivalent: matplotlib's colour names are case-insensitive ('GREY' is grey)",
    "analysis.figures.x_fig9__mutmut_109": "equivalent: matplotlib draws a None annotation text as ''",
    "analysis.figures.x_fig9__mutmut_147": _EMPTY_X, "analysis.figures.x_fig9__mutmut_148": _EMPTY_X,
    "analysis.figures.x_fig9__mutmut_156": "equivalent: matplotlib reads the colour 'none' in any case as transparent",
    "analysis.figures.x_fig9__mutmut_174": "equivalent: finish tests percent for truth only; None acts as False",
    "analysis.summary.x_critical_points__mutmut_37": "equivalent: with no points reduceat gives the same empty float64 array as sizes, and no alpha reads it",
    "analysis.summary.x_critical_points__mutmut_112": _N_CRIT_FLOAT, "analysis.summary.x_critical_points__mutmut_114": _N_CRIT_FLOAT,
    "loaders.datasets.x_generated_stand_in__mutmut_33": _ALIGN, "loaders.datasets.x_generated_stand_in__mutmut_37": _ALIGN,
    "loaders.datasets.x_generated_stand_in__mutmut_64": _BROADCAST, "loaders.datasets.x_generated_stand_in__mutmut_78": _BROADCAST,
    "loaders.datasets.x_load__mutmut_33": "equivalent: download is only tested for truth; None acts as False",
    "loaders.datasets.x_novel_index__mutmut_5": _SETDIFF, "loaders.datasets.x_novel_index__mutmut_7": _SETDIFF,
    "loaders.ffcv_ops.xǁRelabelǁ__init____mutmut_13": _SEEDS_INT64, "loaders.ffcv_ops.xǁRelabelǁ__init____mutmut_15": _SEEDS_INT64,
    "loaders.ffcv_ops.xǁRelabelǁgenerate_code__mutmut_8": _SQUARE,
    "loaders.beton.x_check__mutmut_12": "equivalent: reads two headers' worth and uses the first; the file is known to hold at least one",
    "loaders.ffcv_loader.x_compile_cache_reader__mutmut_18": "equivalent: cache_state_type never reads its manager",
    "loaders.ffcv_loader.x_image_pipeline__mutmut_17": _NON_BLOCKING, "loaders.ffcv_loader.x_image_pipeline__mutmut_40": _NON_BLOCKING,
    "loaders.ffcv_loader.xǁVirtualLoaderǁ__init____mutmut_9": _NON_BLOCKING,
    "loaders.data.x_table_votes__mutmut_17": _DOWNLOAD_NONE, "loaders.data.x_table_votes__mutmut_19": _DOWNLOAD_NONE,
    "loaders.data.x_build__mutmut_16": _DOWNLOAD_NONE, "loaders.data.x_build__mutmut_18": _DOWNLOAD_NONE,
    **{f"loaders.data.x_clean_and_val__mutmut_{i}": _N_VAL_MESSAGE for i in (30, 34, 38, 39)},
    "study.train.x_evaluate__mutmut_13": "equivalent: topk's default dim is -1",
    **{f"study.train.x_evaluate__mutmut_{i}": _KB_2D for i in (26, 35)},
    **{f"study.train.x_fit__mutmut_{i}": _KB_2D for i in (25, 29)},
    "study.train.x_evaluate__mutmut_52": _NAN, "study.train.x_fit__mutmut_61": _NAN,
    "loaders.datasets.x_stratified_subset__mutmut_28": _TIES, "loaders.datasets.x_stratified_subset__mutmut_30": _TIES,
    "loaders.datasets.x_stratified_subset__mutmut_32": _TIES,
    "analysis.summary.x_aggregate__mutmut_29": "equivalent: groupby tests dropna for truth only; None acts as False",
    "analysis.summary.x_summarize__mutmut_38": "equivalent: groupby tests dropna for truth only; None acts as False",
    "analysis.summary.x_aggregate__mutmut_33": "equivalent: sort=True is groupby's default",
    "analysis.summary.x_aggregate__mutmut_38": "equivalent: with no config column the group label is dropped by reset_index(drop=True)",
    "analysis.summary.x_aggregate__mutmut_65": _NO_CONFIG_INDEX, "analysis.summary.x_aggregate__mutmut_66": _NO_CONFIG_INDEX,
    "analysis.summary.x_aggregate__mutmut_67": _NO_CONFIG_INDEX,
    "analysis.bands.xǁBandǁshow__mutmut_3": "equivalent: Band.number tests `suffix` for truth only; None and False both "
                                             "leave the unit off",
    **{f"analysis.lr_trend.x_{name}": _DROPNA for name in ("optimal_lr_trend__mutmut_7", "replicate_of__mutmut_6")},
    **{f"study.groups.x_partition__mutmut_{i}": "equivalent: the novel/white seed's name in the group key only has "
                                                "to differ from the other keys, and shared_part took noise.seed out"
       for i in (16, 17)},
    **{f"loaders.folder.x_read__mutmut_{i}": "equivalent: torch.tensor of Python ints is int64 already (a split is "
                                             "never empty: scan refuses an empty class folder)" for i in (12, 14)},
    "loaders.folder.x_image__mutmut_16": "equivalent: v2.functional.resize antialiases by default since torchvision "
                                         "0.17, and pyproject.toml asks for 0.19 or later",
    **{f"loaders.tensor.x_{name}": _CPU_ONLY for name in (
        "affine__mutmut_11", "affine__mutmut_13", "affine__mutmut_29", "affine__mutmut_31", "batches__mutmut_2",
        "batches__mutmut_3", "batches__mutmut_7")},
    **{f"loaders.tensor.xǁTensorLoaderǁ{name}": _CPU_ONLY for name in (
        "__init____mutmut_2", "__init____mutmut_4", "__init____mutmut_27", "__init____mutmut_32", "order__mutmut_6")},
    **{f"loaders.tensor.x_affine__mutmut_{i}": "equivalent: scale and shift meet only 4-d image batches (N, C, H, W), "
                                               "which (C, 1, 1) broadcasts against as (1, C, 1, 1) does" for i in (6, 24)},
    "loaders.tensor.xǁTensorLoaderǁ__iter____mutmut_13": "equivalent: per_gather stays a multiple of the batch size, so "
                                                        "the batches are the same slices of one order, gathered in "
                                                        "other groups",
    **{f"loaders.tensor.xǁTensorLoaderǁ__iter____mutmut_{i}": "caught by a timeout: one gather per virtual index, "
                                                              "an epoch's work times n_virtual / per_gather"
       for i in (19, 20)},
    **{f"study.provenance.x_device__mutmut_{i}": "equivalent: Ray's accelerator_type names (H100, A100-80G, TPU-V4) "
                                                 "hold no colon, so every split of the key gives the same kind"
       for i in (8, 9, 11)},
    "study.provenance.x_git__mutmut_17": "equivalent: the timeout only bounds a git that hangs; 10 or 11 s both end it "
                                         "(a test gives a hung git: no timeout would hang the launch)",
    **{f"study.provenance.x_record__mutmut_{i}": "equivalent: the totals add numbers rounded to that many places "
                                                 "already, so one place more changes nothing" for i in (158, 168, 183)},
    "study.models.x_build__mutmut_9": "equivalent: a perceptron has no hidden layer, so mlp() never reads its width",
    "study.models.x_convnet__mutmut_27": "equivalent: pool_every is 1 or 2, and i + 1 and i - 1 have the same parity",
    "study.models.x_convnet__mutmut_7": "equivalent: the ConvNets have 2, 4 or 6 layers (ARCHS), none has 3",
    **{f"study.models.x_resnet__mutmut_{i}": "equivalent: nn.Conv2d reads bias for truth, so None adds none as False "
                                             "does" for i in (17, 38)},
    "study.models.x_resnet__mutmut_21": "equivalent: stride=1 is nn.Conv2d's default",
    "study.models.x_resnet__mutmut_3": "equivalent: weights=None is torchvision's default (random init, no download)",
    **{f"analysis.clean_counts.x_{name}": "equivalent: the column is float64 already, and critical_points reads "
                                          "every column with to_numpy(float)"
       for name in ("curves__mutmut_2", "curves__mutmut_8", "curves__mutmut_25", "growth__mutmut_19",
                    "growth__mutmut_21")},
    **{f"analysis.clean_counts.x_{name}": "equivalent: superlinear passes counts = uncensored(s) only to compute them "
                                          "once; computed again from s they are the same"
       for name in ("superlinear__mutmut_10", "superlinear__mutmut_13", "superlinear__mutmut_14",
                    "superlinear__mutmut_16", "superlinear__mutmut_24", "superlinear__mutmut_25",
                    "superlinear__mutmut_27", "growth__mutmut_4", "pooled_slope__mutmut_4")},
    **{f"analysis.clean_counts.x_superlinear__mutmut_{i}": "equivalent: Band.judge reads the interval's ends only, "
                                                           "not its value or basis" for i in (54, 57, 62)},
    "analysis.clean_counts.x_superlinear__mutmut_50": "equivalent but at one float: the upper end exactly 0.99",
    "analysis.clean_counts.x_pooled_slope__mutmut_27": "equivalent: a target's intercept column scaled by 2 halves its "
                                                       "coefficient and leaves the fit and the exponent as they are",
    "analysis.clean_counts.x_pooled_slope__mutmut_36": "equivalent: rcond=None is lstsq's default (machine precision)",
    "analysis.clean_counts.x_threshold__mutmut_33": "equivalent: a lower end of 0 or of 1 label lies far below the "
                                                    "band's 0.5x either way, and the text prints 0 for it",
    "analysis.clean_counts.x_threshold__mutmut_50": "equivalent: the text prints the basis it computed, and Band.judge "
                                                    "reads the interval's ends only",
    "study.cluster.x_check_address__mutmut_12": "equivalent but for an unbracketed IPv6 literal: host:port with a "
                                                "name or an IPv4 host has one colon, which either split finds",
    "study.cluster.x_check_address__mutmut_19": "equivalent: the timeout only bounds a head that never answers; 5 or 6 s "
                                                "both end it (a test gives a silent host: no timeout would hang)",
    **{f"study.cluster.x_check_resources__mutmut_{i}": "equivalent: with resources.gpu = 0 no GPU count is compared"
       for i in (42, 43)},
    "loaders.torch_loader.xǁTorchLoaderǁ__init____mutmut_6": "equivalent on a CPU, where the noise models are already; "
                                                            "moving CUDA ones back for the workers needs a GPU to test",
    "loaders.torch_loader.xǁVirtualDatasetǁ__init____mutmut_18": "equivalent: affine's tensors default to the CPU",
    **{f"loaders.torch_loader.xǁTorchLoaderǁ__iter____mutmut_{i}": "equivalent in what it yields: pinned memory and "
                                                                   "worker processes only make it faster"
       for i in (12, 17, 18, 20, 21, 22)},
    **{f"loaders.torch_loader.xǁTorchLoaderǁ__iter____mutmut_{i}": "equivalent on a CPU: the batch is on the device "
                                                                   "given already, and a copy to the CPU is never "
                                                                   "asynchronous; CUDA needs a GPU to test"
       for i in (23, 25, 26, 27, 28, 30, 31, 32)},
    "loaders.torch_loader.xǁVirtualDatasetǁ__getitem____mutmut_5": "equivalent: the members of a fused group share "
                                                                   "their source images (study.groups keys them on "
                                                                   "everything but the labels' seed); only labels differ",
    "study.slices.x_given__mutmut_7": "equivalent: config keys begin with a lower-case letter, so lstrip('XX+~XX') "
                                      "strips from them what lstrip('+~') does",
    **{f"study.trainable.x_trainable__mutmut_{i}": "equivalent where a checkpoint resumes on the kind of device it was "
                                                   "saved on; map_location matters for a CUDA checkpoint resumed on a "
                                                   "CPU-only node, which needs a GPU to test" for i in (35, 37)},
    "study.trainable.x_trainable__mutmut_47": "equivalent: every member of a fused group reports the same epoch",
    **{f"study.storage.x_token__mutmut_{i}": "not testable in-process: atexit runs the unlink as the interpreter ends; "
                                             "missing_ok matters only if the token went first (a removed root), where "
                                             "the launch has failed already" for i in (23, 25, 26)},
    **{f"study.storage.x_link_datasets__mutmut_{i}": "equivalent on POSIX: symlink_to ignores target_is_directory "
                                                     "there (it matters on Windows only)" for i in (19, 21, 22)},
    **{f"analysis.intervals.x_t_at__mutmut_{i}": "equivalent: t975 is flat from 30 to 39 dof, so interpolating "
                                                 "there gives t975(30)" for i in (8, 9)},
    "analysis.intervals.x_t_at__mutmut_6": "equivalent: at a whole dof below 30 the interpolation's weight is 0, "
                                           "so it returns t975(dof) as the table does",
    **{f"analysis.intervals.x_number__mutmut_{i}": "equivalent: rounding to 9 or 10 places only absorbs float noise "
                                                   "(about 1e-14) in a comparison of signs" for i in (24, 60, 68)},
    "study.storage.x__read_token__mutmut_5": "equivalent: read_text's OSErrors come from the system and carry strerror",
    "study.watch.xǁNoGpuWatchǁ__init____mutmut_5": "equivalent: `said` is read for truth only; None and False both "
                                                  "mean not said yet",
    **{f"study.watch.xǁNoGpuWatchǁon_step_end__mutmut_{i}": "equivalent: stderr is line-buffered (Python >= 3.9) and "
                                                            "the warning ends its line, so it is written at once "
                                                            "either way" for i in (26, 29, 42)},
    **{f"study.cost.x_{name}": "equivalent: a table without a device is a CPU's whatever string stands in for it, as "
                               "long as it names no CUDA device" for name in (
        "_cpu_rates__mutmut_15", "_cpu_rates__mutmut_17", "_cpu_rates__mutmut_20", "bench_rows__mutmut_20",
        "bench_rows__mutmut_22", "bench_rows__mutmut_25")},
    **{f"study.cost.x_group_rate__mutmut_{i}": "equivalent: at a measured k the interpolation's other end is k itself, "
                                                "so it returns rates[k] (to rounding)" for i in (4, 5)},
    "study.cost.x_local_hours__mutmut_42": _SAME_FACTOR, "study.cost.x_local_hours__mutmut_43": _SAME_FACTOR,
    "study.cost.x_local_hours__mutmut_53": "equivalent: estimate caps the GPU fraction at 1",
    "study.cost.x_local_hours__mutmut_69": "equivalent: int() of a positive quotient is its floor",
    "study.cost.x_cores__mutmut_12": "equivalent where the core count can be read (os.cpu_count() is None only where not)",
    "study.cost.x_forward_flops__mutmut_32": "equivalent: FlopCounterMode reads display for truth",
    **{f"analysis.power.x_table__mutmut_{i}": "equivalent: sys.stderr is line-buffered (Python >= 3.9) and each "
                                              "progress line ends in a newline, so flush=True adds nothing" for i in (4, 7, 8)},
    **{f"analysis.power.x_structured__mutmut_{i}": "equivalent: the scenario's δ are tenths; 0.85 and 0.95 lie between "
                                                   "them" for i in (26, 41)},
    "loaders.backends.x_choose__mutmut_16": "equivalent: need is an int, and need <= n // 2 exactly when need <= n / 2",
    "loaders.backends.x_make__mutmut_24": "equivalent: an ImageSet's images are one tensor, each image the same bytes",
    **{f"loaders.backends.{name}": "equivalent: beton.ensure only tests rebuild's truth, and None is as false as False"
       for name in ("x_make__mutmut_72", "x_make__mutmut_74", "x_prepare__mutmut_15", "x_prepare__mutmut_17")},
    "analysis.claims.x_main__mutmut_37": "equivalent: argparse's default for an optional argument is None already",
    "analysis.reproduction.x_main__mutmut_32": "equivalent: parse_args(None) reads sys.argv[1:] itself",
    **{f"analysis.effects.{name}": "equivalent: the summary's columns are numeric already; to_numpy's dtype only "
                                   "converts, and the comparisons, log2 and NaN-filling where() give the same values on "
                                   "int or float" for name in ("x_batch_slope__mutmut_19", "x_batch_slope__mutmut_24",
                                                               "x_best_row__mutmut_17", "x_h_alpha_flat__mutmut_10",
                                                               "x_novel_like_repeated__mutmut_5",
                                                               "x_structured_like_uniform__mutmut_16")},
    **{f"analysis.effects.x_share__mutmut_{i}": "equivalent: a bool mask divided by its count is the same float "
                                                "weights as a float one" for i in (3, 5)},
    "analysis.effects.x_structured_like_uniform__mutmut_64": "equivalent: the δ of a grid are tenths, none at 0.99",
    "analysis.reproduction.x_row__mutmut_52": "equivalent: coverage.select chooses every gathered cell on one split, "
                                              "so the join has one element",
    **{f"analysis.power.x_simulate__mutmut_{i}": "equivalent: every truth function returns floats" for i in (4, 6)},
    "analysis.power.xǁScenarioǁrows__mutmut_2": "equivalent: MultiIndex.to_frame sets the frame's index only `if "
                                                "index:`; None is as falsy as False (the same RangeIndex)",
    "analysis.power.x_simulate__mutmut_60": "equivalent: measured is clipped at 0 already, so measured + 0.05 > 0",
    "analysis.power.x_dataset_size__mutmut_37": "equivalent on the scenario's grid: α is 0 (n90 = 100 there) or ≥ 1",
    "analysis.power.x_dataset_size__mutmut_43": "equivalent on the scenario's grid: its lowest truth is 19.5% (p = 1.5, "
                                                "α = 50, 100 clean labels), above the 10% floor",
    **{f"analysis.coverage.x_judge__mutmut_{i}": "equivalent: the page reads the row's measured text, split and "
                                                 "verdict, not its scale column" for i in (22, 23)},
    "analysis.coverage.x_judge__mutmut_9": "equivalent: a claim with no cell present returns before its row or summary "
                                           "is read (reproduction.row, paper_window)",
    "analysis.coverage.x_planned__mutmut_10": "equivalent: sep='.' is json_normalize's default",
    **{f"analysis.coverage.x_replicates__mutmut_{i}": "equivalent: itertuples' index=None is falsy like False, and its "
                                                      "named tuples equal and hash as plain tuples" for i in (26, 28, 40, 42)},
    **{f"analysis.coverage.x_spent__mutmut_{i}": "equivalent: CORES finds nothing in 'XXXX' as in ''" for i in (54,)},
    **{f"study.experiments.x_plan__mutmut_{i}": "equivalent: a cell's path, tune/cell-NNN, holds 'tune' once, so "
                                                "replace's count changes nothing" for i in (28, 31)},
    **{f"study.preflight.x_fitted__mutmut_{i}": "equivalent: for a folder dataset datasets.split_sizes lists "
                                                "data.path and returns, never reading its root or stand_in"
       for i in (7, 8, 16)},
    "study.console.x_dashboard_lines__mutmut_17": "equivalent: a default of 'XXXX' lowercases to no 'token' either, "
                                                  "so an unset RAY_AUTH_MODE takes the same branch",
    **{f"study.console.x_hold_dashboard__mutmut_{i}": "equivalent: the handler runs in the main thread during the "
                                                      "wait and sets the event, which ends any wait at once"
       for i in (17, 18)},
    "study.console.xǁProgressǁ__init____mutmut_9": "equivalent: last_line is compared with progress lines and their "
                                                   "counts, which start 'trials: ' and equal neither '' nor 'XXXX'",
    "study.console.xǁProgressǁupdate__mutmut_8": "equivalent: show reads final for truth only; None is False there",
    "study.config.x_check_value__mutmut_26": "equivalent: owner() never reads the last part of the key, so '.X' "
                                             "leads to the same section as '.x'",
    "study.config.x_load__mutmut_2": "equivalent: typed() reads `given` only for a key the schema lacks, and merging "
                                     "into the structured Config has refused such a key already",
    "analysis.figures.x_caption__mutmut_33": "equivalent: only .empty is read of the empty Series, whatever its dtype",
    "analysis.figures.x_save__mutmut_17": "equivalent: fig.text's default transSubfigure is transFigure on a top-level figure",
    **{f"analysis.figures.x_save__mutmut_{i}": "equivalent: savefig takes the format from the temporary file's .png suffix, "
                                 "and lowercases a format given" for i in (30, 34, 39)},
    "analysis.figures.x_by_x__mutmut_8": "equivalent: the table always holds x and the metric besides the interval's columns, so a "
                         "strict subset and a subset agree",
    **{f"analysis.figures.x_curve__mutmut_{i}": "equivalent: its inputs are numeric arrays already; isfinite, subtraction and "
                                  "clipping give the same without dtype=float" for i in (4, 6)},
    **{f"analysis.figures.x_measured_ticks__mutmut_{i}": "equivalent: a single tick's distance from -inf is infinite, whatever "
                                           "the span" for i in (16, 21, 23)},
    **{f"analysis.figures.x_{name}": "equivalent: set_title's fontsize=None is rcParams font.size, 10"
       for name in ("finish__mutmut_16", "confusion__mutmut_73")},
    "analysis.figures.x_lines__mutmut_11": "equivalent: groupby sorts by default",
    **{f"analysis.figures.x_{name}": "equivalent: matplotlib's colour names are case-insensitive"
       for name in ("lines__mutmut_68", "human__mutmut_96", "fig9__mutmut_160", "fig9__mutmut_96",
                    "fig9__mutmut_158")},
    **{f"analysis.figures.x_{name}": "equivalent: read for truth only; None is False there"
       for name in ("fig9__mutmut_5", "fig9__mutmut_176", "human__mutmut_11")},
    **{f"analysis.figures.x_fig9__mutmut_{i}": "equivalent: these bounds reach only curve(), which reads them as float: NaN, "
                                 "None or a length-1 NaN all draw no bar" for i in (41, 42, 43, 44)},
    "analysis.figures.x_fig9__mutmut_111": "equivalent: annotate(None) sets the text to ''",
    **{f"analysis.figures.x_fig9__mutmut_{i}": "equivalent: plot([], 'o') is the same empty line as plot([], [], 'o')"
       for i in (149, 150)},
    **{f"analysis.figures.x_confusion__mutmut_{i}": "equivalent: without ax, Figure.colorbar uses the image's own axes"
       for i in (78, 81)},
    "loaders.noise.x_wrong_class_order__mutmut_21": _INT_DTYPE, "loaders.noise.x_wrong_class_order__mutmut_23": _INT_DTYPE,
    **{name: _CPU_ONLY for name in ("loaders.noise.xǁNoiseModelǁto__mutmut_2", "loaders.noise.xǁNoiseModelǁto__mutmut_4",
                                    *(f"loaders.noise.xǁWhiteNoiseǁ__call____mutmut_{i}" for i in (12, 14, 53, 55)))},
    "study.trial.xǁTrialǁ__init____mutmut_55": ("equivalent on a CPU (the noise distributions stay on the CPU either "
                                               "way); on CUDA an h_alpha trial would index CPU targets with GPU labels and fail: "
                                               "no CPU test can see it, a Trial run on a GPU would"),
    "study.trial.xǁTrialǁmodel__mutmut_9": ("equivalent on a CPU (a model is built there); on CUDA a Trial's own nets are "
                                           "moved by Single and Fused, and only bench/replicates.py would get CPU models"),
}


def work_dir(module: str) -> Path:
    return WORK / module.removesuffix(".py").replace("/", ".")


def refresh(work: Path) -> None:
    """The work dir holds the current work tree (tracked and untracked-not-ignored files) beside mutmut's
    mutants/ folder, which keeps every verdict of earlier runs: mutmut tests only the mutants without one (new,
    in a function that changed, or left by a run that stopped)."""
    work.mkdir(parents=True, exist_ok=True)
    for old in work.iterdir():
        if old.name not in ("mutants", RECHECKED, TESTED):
            shutil.rmtree(old) if old.is_dir() and not old.is_symlink() else old.unlink()
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, check=True,
                           capture_output=True).stdout.decode().split("\0")
    for name in filter(None, files):
        src = REPO / name
        if src.is_file():
            (work / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, work / name)


def ours_to_recheck(name: str, state: str) -> bool:
    """A mutant whose verdict mutmut could not give right: one `recheck` runs, and whose cached verdict stands."""
    return state in RECHECK or (state == "survived" and name.startswith(AT_IMPORT))


def recheck(work: Path, tests: list[str], names: list[str], deadline: float) -> dict[str, str]:
    """Mutants of functions no test called (and those that timed out) re-run in a fresh process, the mutant active
    from the start, on all the module's tests: mutmut runs only the tests it saw call a function, and a function run at import
    (clean_counts.threshold builds CLAIMS) or in a subprocess is called by none. A failing test kills the mutant
    ("killed on recheck"). Those left at the deadline (time.time()) stay as mutmut left them."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([".", str(Path(mutmut_pkg.__file__).parents[1]),
                                                        os.environ.get("PYTHONPATH", "")])}
    out = {}
    for name in names:
        if time.time() > deadline:
            break
        try:
            run = subprocess.run([sys.executable, "-m", "pytest", *PYTEST_ARGS, *tests], cwd=work / "mutants",
                                 env={**env, "MUTANT_UNDER_TEST": name}, capture_output=True, timeout=600)
        except subprocess.TimeoutExpired:
            continue
        if run.returncode in (1, 2):  # tests failed, or the mutant broke their import
            out[name] = "killed on recheck"
    return out


def selection(module: str, tests: list[str]) -> list[str]:
    """pytest's arguments that choose the module's tests."""
    return [*tests, *(["-k", DESELECT[module]] if module in DESELECT else [])]


def toml_list(items: list[str]) -> str:
    return "[" + ", ".join(json.dumps(i) for i in items) + "]"


def run_mutmut(work: Path, children: int, timeout_s: int, names: list[str] | None) -> bool:
    """`mutmut run` in the work dir (on the named mutants only, tested afresh, or on every one without a verdict);
    True if it finished within timeout_s. Its own process group: on a timeout, Ctrl-C or a kill, mutmut's
    forkserver and workers are stopped with it."""
    with open(work / "mutmut.log", "a") as log:
        run = subprocess.Popen([*MUTMUT, "run", "--max-children", str(children), *(names or [])],
                               cwd=work, start_new_session=True, stdout=log, stderr=subprocess.STDOUT)
        try:
            return run.wait(timeout=timeout_s) == 0
        except subprocess.TimeoutExpired:
            return False
        finally:
            if run.poll() is None:
                os.killpg(run.pid, signal.SIGKILL)
                run.wait()


def listing(work: Path, module: str, names: list[str] | None) -> dict[str, str]:
    """mutmut's verdict on each mutant of the module (or on the named ones)."""
    out = subprocess.run([*MUTMUT, "results", "--all", "true"], cwd=work, capture_output=True, text=True).stdout
    status = {}
    for line in out.splitlines():
        name, sep, state = line.strip().rpartition(": ")
        if sep and name.startswith(mutant_prefix(module)) and (names is None or name in names):
            status[name] = state
    return status


def tests_hash(work: Path, tests: list[str]) -> str:
    """The module's test files and the fixtures they share, as copied into its work dir (what mutmut ran), and the
    data root they read, as one sha256."""
    digest = hashlib.sha256(os.environ.get("STUDY_DATA_ROOT", "").encode())  # the data they read, too
    for name in sorted({*tests, "tests/conftest.py", "tests/helpers.py"}):
        digest.update(name.encode() + b"\0" + (work / name).read_bytes())
    return digest.hexdigest()


def run_module(module: str, tests: list[str], children: int, timeout_s: int, only: list[str] | None = None) -> dict:
    """mutmut over `module` with `tests` in the module's work dir: every mutant without a verdict yet, or `only`
    those named (tested again whatever their verdict; their statuses only)."""
    work = work_dir(module)
    refresh(work)
    config = ["", "[tool.mutmut]", f"source_paths = {toml_list([module])}",
              f"also_copy = {toml_list(ALSO_COPY)}",
              f"pytest_add_cli_args = {toml_list(PYTEST_ARGS)}",
              f"pytest_add_cli_args_test_selection = {toml_list(selection(module, tests))}",
              f"preload_modules_file = {json.dumps(str(work / 'preload.txt'))}",
              *(f"{k} = {json.dumps(v)}" for k, v in SETTINGS.items())]
    (work / "preload.txt").write_text("\n".join(PRELOAD) + "\n")
    with open(work / "pyproject.toml", "a") as f:
        f.write("\n".join(config) + "\n")
    start = time.time()
    # mutmut keeps a verdict, and its record of which tests call each function, until the function changes, not
    # when a test does: a new test would neither be run on the mutants it kills nor change their verdicts. So when
    # the module's tests (or the data they read) changed since, that record is collected afresh and the mutants
    # not killed run again.
    stamp, tested = work / TESTED, tests_hash(work, tests)
    changed = (stamp.read_text() if stamp.exists() else "") != tested
    if changed:
        (work / "mutants" / "mutmut-stats.json").unlink(missing_ok=True)
    finished = run_mutmut(work, children, timeout_s, only)
    status = listing(work, module, only)
    if only is None and finished and changed:
        again = [n for n, state in status.items() if state not in KILLED]
        if again:
            finished = run_mutmut(work, children, max(1, int(start + timeout_s - time.time())), again)
            status.update(listing(work, module, again))
    if finished and only is None:
        stamp.write_text(tested)
    elapsed = time.time() - start
    # verdicts of earlier rechecks of this source stand (mutmut keeps its own; these are ours)
    cache = work / RECHECKED
    rechecked = (json.loads(cache.read_text()) if cache.exists() else {}).get(source_hash(module), {})
    if only is None:  # named mutants are tested afresh
        status.update({n: s for n, s in rechecked.items() if ours_to_recheck(n, status.get(n, ""))})
    fresh = recheck(work, selection(module, tests), [n for n, state in status.items() if ours_to_recheck(n, state)],
                    start + 1.2 * timeout_s)
    status.update(fresh)
    cache.write_text(json.dumps({source_hash(module): {**rechecked, **fresh}}))
    not_killed = {}
    for name, state in sorted(status.items()):
        if state not in KILLED and state != "not checked":
            diff = subprocess.run([*MUTMUT, "show", name], cwd=work, capture_output=True, text=True).stdout
            not_killed[name] = {"status": state,
                                "diff": [l for l in diff.splitlines() if l[:1] in "+-" and l[:3] not in ("+++", "---")],
                                "judged": JUDGED.get(name, "not judged")}
    counts: dict[str, int] = {}
    for state in status.values():
        counts[state] = counts.get(state, 0) + 1
    checked = len(status) - counts.get("not checked", 0)  # a run stopped by --timeout leaves some unchecked
    # an empty listing (mutmut stopped or its results unreadable) is no finished run of 0 mutants: resume it
    finished = finished and checked == len(status) and bool(status)
    return score({"tests": tests, "source_sha256": source_hash(module), "finished": finished, "seconds": round(elapsed, 1), "mutants": checked,
                  "unchecked": len(status) - checked, "counts": counts, "not_killed": not_killed, "status": status})


def mutant_prefix(module: str) -> str:
    """How mutmut's mutant names of a module begin: rundir/pack.py -> 'rundir.pack.x', rundir/__init__.py ->
    'rundir.x' (a package's own functions are named after the package)."""
    return module.removesuffix(".py").removesuffix("/__init__").replace("/", ".") + ".x"


def source_hash(module: str) -> str:
    return hashlib.sha256((REPO / module).read_bytes()).hexdigest()


def score(entry: dict) -> dict:
    """A module's entry with its killed counts and shares (re)computed, and JUDGED applied to its survivors."""
    for name, mutant in entry["not_killed"].items():
        mutant["judged"] = JUDGED.get(name, "not judged")
    killed = sum(entry["counts"].get(s, 0) for s in KILLED)
    checked, harmless = entry["mutants"], sum(1 for m in entry["not_killed"].values() if m["judged"] != "not judged")
    entry = dict(entry)
    not_killed = entry.pop("not_killed")
    return {**entry, "killed": killed, "killed_share": round(killed / checked, 4) if checked else None,
            "judged_harmless": harmless,
            "killed_share_of_non_equivalent": round(killed / (checked - harmless), 4) if checked > harmless else None,
            "not_killed": not_killed}


def rerun_survivors(module: str, entry: dict, children: int, timeout_s: int, command: str) -> dict:
    """The module's earlier entry with its survivors re-run on the current tests (the source unchanged,
    mutmut gives its mutants the same names): those now killed leave not_killed and count as killed."""
    if entry.get("source_sha256") != source_hash(module):  # mutmut numbers mutants per function: names would shift
        sys.exit(f"{module} changed since its entry was made (or the entry has no source_sha256): run it in full")
    names = sorted(entry["not_killed"])
    fresh = run_module(module, TESTS[module], children, timeout_s, names)
    status = fresh.pop("status")
    # one left unchecked (stopped by --timeout) keeps its earlier status
    now = {n: entry["not_killed"][n]["status"] if status.get(n, "not checked") == "not checked" else status[n]
           for n in names}
    counts = dict(entry["counts"])
    for name in names:
        old, new = entry["not_killed"][name]["status"], now[name]
        counts[old] -= 1
        counts[new] = counts.get(new, 0) + 1
    not_killed = {n: {**m, "status": now[n]} for n, m in entry["not_killed"].items() if now[n] not in KILLED}
    reruns = [*entry.get("survivor_reruns", []), {"date": time.strftime("%Y-%m-%d"), "command": command,
                                                  "tests": TESTS[module], "rerun": len(names),
                                                  "killed_now": len(names) - len(not_killed)}]
    # every mutant has a verdict on the current tests once no earlier one was unchecked and this rerun checked all
    # it named (a first run stopped while re-running its survivors on new tests is finished here)
    finished = entry["unchecked"] == 0 and fresh["finished"]
    return score({**{k: v for k, v in entry.items() if k not in ("not_killed", "counts", "finished")},
                  "finished": finished, "counts": {k: v for k, v in counts.items() if v}, "survivor_reruns": reruns,
                  "not_killed": not_killed})


def current(module: str, entry: dict | None) -> bool:
    """An entry measured on the module's source as it is now, every mutant checked."""
    return bool(entry) and entry.get("source_sha256") == source_hash(module) and entry["finished"]


def write_report(modules: dict[str, dict], command: str, out: Path) -> dict:
    """The report over every module's last entry; an entry measured on another source is marked stale and
    counts in no total."""
    for module, entry in modules.items():
        entry["stale"] = entry.get("source_sha256") != source_hash(module)
    now = {m: r for m, r in modules.items() if not r["stale"]}
    total = sum(r["mutants"] for r in now.values())
    killed = sum(r["killed"] for r in now.values())
    report = {
        "tool": f"mutmut {version('mutmut')}", "settings": {**SETTINGS, "preload": PRELOAD}, "pytest_args": PYTEST_ARGS,
        "command": command, "date": time.strftime("%Y-%m-%d"),
        "modules_current": [m for m in TESTS if m in modules and current(m, modules[m])],
        "modules_unfinished": [m for m, r in now.items() if not r["finished"]],
        "modules_stale": [m for m, r in modules.items() if r["stale"]],
        "modules_not_run": [m for m in TESTS if m not in modules],
        "below_target": [m for m, r in now.items() if (r["killed_share_of_non_equivalent"] or 0) < TARGET],
        "mutants": total, "killed": killed, "killed_share": round(killed / total, 4) if total else None,
        "judged_harmless": sum(r["judged_harmless"] for r in now.values()),
        "note": "mutants = those checked; killed_share counts mutmut's 'killed' and 'killed on recheck' (a mutant no "
                "test called in-process, re-run in a fresh process on all the module's tests, see recheck()); every other mutant (survived, "
                "timeout, ...) is listed per module with its diff and, where a person judged it harmless, why (JUDGED "
                "in scripts/mutants.py). A module's entry holds the sha256 of the source it was measured on: stale "
                f"when the source has changed since (totals leave it out). Target: {TARGET:.0%} of the non-equivalent "
                "mutants killed per module.",
        "modules": {m: modules[m] for m in [*TESTS, *modules] if m in modules},
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_name(f".{out.name}.tmp"), "w") as f:
        f.write(json.dumps(report, indent=1, ensure_ascii=False) + "\n")
    os.replace(out.with_name(f".{out.name}.tmp"), out)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("modules", nargs="*", help="of TESTS (default: each whose entry is not current)")
    parser.add_argument("--max-children", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per module and run (the next run resumes)")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--survivors", action="store_true",
                        help="re-run only the mutants --out lists as not killed for these modules (after adding tests)")
    parser.add_argument("--rescore", action="store_true",
                        help="run nothing: rewrite --out with JUDGED (after editing it) applied to every module")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a kill unwinds through run_module's cleanup
    # The tests run in .mutants/<module>/, where no ../shared is beside them: without the data root the tests that
    # read MNIST or CIFAR-10 skip, and every mutant only they reach survives.
    data = Path(os.environ.get("STUDY_DATA_ROOT") or REPO.parent / "shared" / "datasets").resolve()
    if not (data / "MNIST" / "raw").is_dir():
        print(f"error: STUDY_DATA_ROOT={str(data)!r} holds no MNIST/raw: set it to the datasets folder "
              "(../shared/datasets beside the checkout is found by itself)", file=sys.stderr)
        sys.exit(2)
    os.environ["STUDY_DATA_ROOT"] = str(data)
    unknown = [m for m in args.modules if m not in TESTS]
    if unknown:
        sys.exit(f"unknown module(s) {unknown}: choose from {', '.join(TESTS)}")
    command = "python scripts/mutants.py " + " ".join(sys.argv[1:])
    entries = lambda: json.loads(args.out.read_text())["modules"] if args.out.exists() else {}  # noqa: E731
    todo = [] if args.rescore else args.modules or [m for m in TESTS if not current(m, entries().get(m))]
    for module in todo:
        print(f"{module}: mutating ({len(TESTS[module])} test files)", flush=True)
        if args.survivors:
            entry = rerun_survivors(module, entries()[module], args.max_children, args.timeout, command)
        else:
            entry = {"date": time.strftime("%Y-%m-%d"), "command": command,
                     **run_module(module, TESTS[module], args.max_children, args.timeout)}
            entry.pop("status")
        modules = {**entries(), module: entry}  # read again: runs may overlap
        write_report(modules, command, args.out)
        print(f"{module}: {entry['killed']}/{entry['mutants']} killed ({entry['killed_share']}), "
              f"{entry['unchecked']} unchecked", flush=True)
    report = write_report({m: score(e) for m, e in entries().items()}, command, args.out)
    print(f"{report['killed']}/{report['mutants']} mutants killed ({report['killed_share']}) in the current entries; "
          f"stale: {report['modules_stale'] or 'none'}; unfinished: {report['modules_unfinished'] or 'none'}; "
          f"not run: {report['modules_not_run'] or 'none'}; written to {args.out}")


if __name__ == "__main__":
    main()
