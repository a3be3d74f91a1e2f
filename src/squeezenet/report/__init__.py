"""Reports: per-layer architecture tables (the paper's Table 1) and their renderings."""

from .architecture import ArchitectureReport, LayerRow, architecture_report
from .render import architecture_table, human_bytes, print_architecture

__all__ = ["ArchitectureReport", "LayerRow", "architecture_report", "architecture_table", "human_bytes", "print_architecture"]
