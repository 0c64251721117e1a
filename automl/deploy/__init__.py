"""From the front to a shipped model: ONNX forms that check themselves, the front re-measured
(`report`), one model picked and exported (`pick`), one architecture retrained (`train`)."""
