"""Z-Image-Turbo team WebUI: settings, model loading, the generation engine and its front ends."""
