"""The thin GAN training loop's pieces: models (more to come: data, Trainer)."""
