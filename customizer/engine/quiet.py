"""Library messages that are harmless in this app, dropped by their exact text (each with the reason), so that
the first render's log shows only what a user should act on.

- diffusers 0.42 warns "There are modules in UNet2DConditionModel that should be kept in float32: []. Casting
  directly with `to()` ..." on every dtype cast, even with no such modules (its check on the list is always true);
  load_ip_adapter casts the UNet to the dtype it already has. Only the message with the empty list is dropped.
- peft warns "Already found a `peft_config` attribute in the model" for every adapter after the first; several named
  adapters on one UNet (themes + character LoRAs) is this engine's design.
"""
from __future__ import annotations

import logging
import warnings

EMPTY_FP32_CAST = "should be kept in float32: []"
PEFT_SECOND_ADAPTER = r"Already found a `peft_config` attribute"


class _Drop(logging.Filter):
    def __init__(self, text: str):
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


def install() -> None:
    """Idempotent: filters are added once per logger, and warnings.filterwarnings de-duplicates."""
    log = logging.getLogger("diffusers.models.modeling_utils")
    if not any(isinstance(f, _Drop) and f.text == EMPTY_FP32_CAST for f in log.filters):
        log.addFilter(_Drop(EMPTY_FP32_CAST))
    warnings.filterwarnings("ignore", message=PEFT_SECOND_ADAPTER, category=UserWarning)
