"""The figures the plot stage draws for each setting, by file name, with their captions: the report
links them under these names."""

FIGURES = {
    "learning_curves": "Learning curves",
    "examples": "Correctly and wrongly classified test images",
    "feature_maps": "Feature maps",
    "weights": "Weight and bias histograms",
    "confusion": "Confusion matrix",
}
