"""The few shims RecBole 1.2.1 needs on today's numpy and torch, in one place.

Imported first by ``recbole_rag/__init__.py``, so every entry point gets them before RecBole runs.
Pins live in setup.cfg (pandas<3, setuptools<81); what a pin cannot fix is shimmed here.
"""

import warnings

import numpy as np
import torch

# numpy 2 removed these aliases. RecBole's Config.compatibility_settings() reads np.float_,
# np.complex_ and np.unicode_ on every Config, and ray (imported by recbole.quick_start) uses
# np.bool8. Restoring the alias is the whole fix; nothing else in numpy 2 trips RecBole.
_NUMPY2_ALIASES = {
    "float_": np.float64,
    "complex_": np.complex128,
    "unicode_": np.str_,
    "bool8": np.bool_,
}
for _name, _dtype in _NUMPY2_ALIASES.items():
    if _name not in np.__dict__:
        setattr(np, _name, _dtype)

# Importing recbole.model.sequential_recommender runs sine.py, which calls
# torch.autograd.set_detect_anomaly(True) for the whole process (1.5x slower training).
# Import it once here, then switch anomaly detection back off.
import recbole.model.sequential_recommender  # noqa: E402,F401

torch.autograd.set_detect_anomaly(False)

# With pandas < 3 (pinned) RecBole's `df[field].fillna(..., inplace=True)` still works, but pandas
# 2.2+ warns about it on every dataset load; the warning is about RecBole's code, not the user's.
warnings.filterwarnings("ignore", message=r".*inplace method.*", category=FutureWarning)
# RecBole's Trainer builds torch.cuda.amp.GradScaler every epoch, deprecated in torch 2.4+.
warnings.filterwarnings("ignore", message=r".*torch.cuda.amp.GradScaler.*", category=FutureWarning)
