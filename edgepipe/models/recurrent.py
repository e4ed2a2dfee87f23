"""LSTM and GRU sequence classifiers: input (batch, time, features), classify from the last time step."""

from __future__ import annotations

from torch import nn


class RecurrentClassifier(nn.Module):
    def __init__(self, input_shape: tuple[int, ...], num_classes: int, cell: str = "lstm", hidden: int = 128,
                 layers: int = 1, dropout: float = 0.0, bidirectional: bool = False) -> None:
        super().__init__()
        if len(input_shape) != 2:
            raise ValueError(f"recurrent models take (time, features) samples, got shape {input_shape}")
        rnn_class = {"lstm": nn.LSTM, "gru": nn.GRU}[cell]
        self.rnn = rnn_class(input_shape[1], hidden, num_layers=layers, batch_first=True,
                             dropout=dropout if layers > 1 else 0.0, bidirectional=bidirectional)
        self.classifier = nn.Linear(hidden * (2 if bidirectional else 1), num_classes)

    def forward(self, x):
        outputs, _ = self.rnn(x)
        return self.classifier(outputs[:, -1])
