"""Guided depth upsampling: models, degradations, synthetic scenes, dataset readers, training recipe, inference.

- :mod:`densepac.depth.models`: the registry's depth models (baselines, PAC joint upsampling, learned JBU);
- :mod:`densepac.depth.degrade`: how low-resolution depth is simulated from high-resolution depth;
- :mod:`densepac.depth.synthetic`: procedural RGB-D scenes;
- :mod:`densepac.depth.datasets`: NYU Depth v2, Middlebury, folder and synthetic readers;
- :mod:`densepac.depth.real`: a real RGB-D scene shipped with scikit-image (Middlebury 2014 Motorcycle);
- :mod:`densepac.depth.transforms`: joint RGB + depth augmentations;
- :mod:`densepac.depth.recipe`: one config -> model, data, trainer; export of shipped weights;
- :mod:`densepac.depth.evaluate`: side-by-side evaluation tables;
- :mod:`densepac.depth.inference`: numpy in, numpy out, tiled and memory-bounded.
"""
