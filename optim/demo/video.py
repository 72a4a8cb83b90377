"""Write annotated frames as an H.264 MP4 (PyAV, which bundles FFmpeg) that browsers play and users download."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from optim.demo.uploads import import_av


class Mp4Writer:
    """`write(frame)` PIL images of one size, then `close()`; odd sizes are padded to even (yuv420p needs it)."""

    def __init__(self, path: Path, fps: float):
        av = import_av()
        self.path = Path(path)
        self.container = av.open(str(self.path), mode="w")
        self.stream = self.container.add_stream("libx264", rate=round(fps) or 10)
        self.stream.pix_fmt = "yuv420p"
        self.stream.options = {"crf": "23", "preset": "veryfast"}
        self.size: tuple[int, int] | None = None
        self._av = av

    def write(self, frame: Image.Image) -> None:
        if self.size is None:
            self.size = (frame.width + frame.width % 2, frame.height + frame.height % 2)
            self.stream.width, self.stream.height = self.size
        if frame.size != self.size:
            padded = Image.new("RGB", self.size)
            padded.paste(frame, (0, 0))
            frame = padded
        for packet in self.stream.encode(self._av.VideoFrame.from_image(frame)):
            self.container.mux(packet)

    def close(self) -> None:
        if self.size is not None:
            for packet in self.stream.encode():
                self.container.mux(packet)
        self.container.close()
