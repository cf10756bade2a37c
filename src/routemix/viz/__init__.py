"""Figures that show what multi-path networks and clustering networks learned (thesis sec. 3.5, 4.5.3).

Every figure is drawn headless (matplotlib's Agg backend) to PNG and SVG by
:func:`routemix.viz.common.save_figure`, with a caption line saying what it shows and which
checkpoint and data made it. ``routemix viz FIGURE CHECKPOINT`` draws one from the command line
(:mod:`routemix.commands.viz`); the figures of trained classifiers live in
:mod:`routemix.viz.routing`, those of clustering runs in :mod:`routemix.viz.clusters`.
"""
