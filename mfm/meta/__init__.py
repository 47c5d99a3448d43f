"""The functional virtual step shared by MFM and Meta-Weight-Net, and the modulation itself."""

from mfm.meta.bilevel import (
                              BilevelResult,
                              bilevel_update,
                              buffer_copies,
                              functional_forward,
                              select_virtual,
                              virtual_step,
)
from mfm.meta.modulation import ModContext, Modulator, site_selection

__all__ = ["BilevelResult", "ModContext", "Modulator", "bilevel_update", "buffer_copies",
           "functional_forward", "select_virtual", "site_selection", "virtual_step"]
