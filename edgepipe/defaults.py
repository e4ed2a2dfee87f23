"""The default of every stage setting that a command-line option also offers, in one place (the build settings'
are the device runtime's: edgepipe/device/settings.py declares each with its range and help).

recipe.py's models (what recipes and the Python API are validated against) and the CLI's options both read
these. This module imports nothing, so `edgepipe --help` stays quick: pydantic loads when a command runs.
"""

EXPORT = {"opset": 18, "dynamic_batch": True, "exporter": "dynamo"}

PRUNE = {"method": "channel", "importance": "l1", "ratio": None, "target_macs": None, "remove_blocks": None,
         "global_pruning": False, "round_to": 8, "steps": 1, "finetune_epochs": 3, "finetune_lr": None,
         "target_latency_ms": None, "latency_batch": 1, "latency_runtime": "onnxruntime", "latency_profile": None,
         "distill": "auto", "distill_alpha": 0.5, "distill_temperature": 4.0}

QUANTIZE = {"method": "minmax", "percentile": 99.99, "calibration": "calibration/mnist-train-512.yaml",
            "reduce_range": False, "qat": False, "max_drop": None, "cpu_speed_fallback": True, "speed_batch": 64,
            "retime": False, "speed_runtime": "auto", "tensorrt_version": "8.6.1",
            "qat_distill": "auto", "qat_distill_alpha": 0.5, "qat_distill_temperature": 4.0}

BENCH = {"batch_sizes": (1, 64), "warmup": 10, "warmup_seconds": 0.2, "iters": 100, "seconds": 0.5, "repeats": 3,
         "threads": None, "end_to_end": True, "memory": True, "deploy_batch": 1, "steady": False,
         "tune_settings": True, "budget_s": 120.0}
