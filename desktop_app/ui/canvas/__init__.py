"""The canvas widgets: CanvasPanel (tools + view + bars), CanvasView, items, dialogs."""
