"""What the probe stages (classify, retrieval, geometry, report) share: the metrics and
their intervals, the metric-learning head, a layer's geometry, the choice of layers a
probe reads, and the figures."""
