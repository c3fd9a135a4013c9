"""Whole scenes: the 38-Cloud patch grid, prediction, and scoring by the authors' protocol.

    grid        THE scene grid: rows/cols of a scene and its centred padding, crop and pad
    stitch      patches onto a canvas; sliding windows with seam-free blending
    reader      patch bands read on a thread pool, a few batches ahead of the model
    inference   a model on uint16 windows, batched per device (TTA, CPU BatchNorm folding)
    predict     `predict_scenes`: whole-scene probability and mask GeoTIFFs from a bundle
    background  the GeoTIFF writer threads of predict
    geotiff     the products' encodings (ceil(255·p), masks, footprint) and georeference
    sources     a scene's prediction as a scene GeoTIFF or per-patch files
    evaluate    `evaluate_scenes`: the authors' evaluation.m, per scene then the mean
    metrics     `SceneMeter`: per-scene scoring of validation during training
    histograms  per-scene probability histograms: the counts at any threshold

Import from the modules (`from cloudseg.scenes.evaluate import evaluate_scenes`), or the
package-level names of `cloudseg`; nothing is imported here, so importing one module stays light.
"""
