"""What every layer uses: settings, logs, metrics, the clock, excerpts of outside text, process
facts."""
