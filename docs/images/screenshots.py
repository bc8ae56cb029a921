"""Retake the demo screenshots of docs/demo.md: a real-size CT and a radiograph, in headless Chromium.

    python docs/images/screenshots.py      # needs the demo extra, chromium and chromium-driver (apt)

Writes docs/images/demo_ct.png (a 512 x 512 x 300 chest-CT phantom, `.nii.gz`, as the page shows it after the
upload: progress, radiological viewer, the strip of the slices the model receives, the estimate) and
docs/images/demo_radiograph.png (a 4096 x 4096 radiograph; the Images tab is selected by itself). The inputs are
synthetic (tests/unit/media_samples.ct_phantom); the model is the tiny random checkpoint, so answers are noise.
"""

from __future__ import annotations

import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def _inputs(folder: Path) -> tuple[Path, Path]:
    import nibabel
    import numpy as np
    from PIL import Image

    from tests.unit.media_samples import ct_phantom

    ct = folder / "chest_ct.nii.gz"
    volume = ct_phantom(slices=300).transpose(1, 0, 2)  # (x, y, z) as converters such as dcm2niix store CTs
    image = nibabel.Nifti1Image(np.ascontiguousarray(volume), np.diag([-0.7, -0.7, 1.25, 1.0]))
    image.header.set_slope_inter(1.0, 0.0)
    nibabel.save(image, str(ct))
    radiograph = folder / "chest_radiograph.png"
    grey = np.clip(ct_phantom(4096, 4096, 1)[:, :, 0].astype(np.float32) / 8 + 128, 0, 255).astype(np.uint8)
    Image.fromarray(grey).save(radiograph)
    return ct, radiograph


def main() -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    import hulumed
    from hulumed.demo.app import build_demo, launch

    with tempfile.TemporaryDirectory() as tmp:
        ct, radiograph = _inputs(Path(tmp))
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        engine = hulumed.load(ROOT / "tests" / "fixtures" / "golden" / "tiny-qwen2", device="cpu")
        demo = build_demo(engine)
        _, url, _ = launch(demo, host="127.0.0.1", port=port, block=False)
        options = Options()
        options.binary_location = shutil.which("chromium") or "chromium"
        for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1600,2300"):
            options.add_argument(flag)
        browser = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "chromedriver"), options=options)
        wait = WebDriverWait(browser, 300)
        try:
            for path, ready, out in ((ct, (By.ID, "volume-info"), "demo_ct.png"),
                                     (radiograph, (By.CSS_SELECTOR, "#images img"), "demo_radiograph.png")):
                browser.get(url)
                upload = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#upload input[type=file]")))
                started = time.perf_counter()
                upload.send_keys(str(path))
                if out == "demo_ct.png":
                    wait.until(ec.text_to_be_present_in_element(ready, "300 slices along axis 2"))
                    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#strip img")) >= 32)
                else:
                    wait.until(ec.visibility_of_element_located(ready))
                wait.until(ec.text_to_be_present_in_element((By.ID, "estimate"), "whole request"))
                print(f"{path.name}: attached and shown in {time.perf_counter() - started:.1f} s")
                time.sleep(1)
                browser.save_screenshot(str(Path(__file__).with_name(out)))
                print(f"wrote docs/images/{out}")
        finally:
            browser.quit()
            demo.close()


if __name__ == "__main__":
    main()
