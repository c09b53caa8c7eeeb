"""Figures and tables from result files only; never imports training code."""
