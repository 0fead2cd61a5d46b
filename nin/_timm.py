"""timm, imported without the `import wandb` it does eagerly for a logging helper nin-ablate never uses.

`--wandb disabled` promises that wandb is never imported; every timm import in nin goes through this module.
"""

import sys

_block_wandb = "wandb" not in sys.modules
if _block_wandb:
    sys.modules["wandb"] = None  # type: ignore[assignment]  # makes `import wandb` raise ImportError, which timm expects
try:
    import timm
    from timm.models import register_model
    from timm.optim import create_optimizer_v2
    from timm.scheduler import create_scheduler_v2
finally:
    if _block_wandb and sys.modules.get("wandb", 0) is None:
        del sys.modules["wandb"]

__all__ = ["timm", "register_model", "create_optimizer_v2", "create_scheduler_v2"]
