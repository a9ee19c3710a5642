"""Comparing finished (and unfinished) runs: loading run dirs, paired statistics, tables, plots."""
