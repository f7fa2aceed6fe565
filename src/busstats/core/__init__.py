"""What every layer uses: settings, logs, metrics, the clock, errors that mean the same in
every layer (`NotFound`), excerpts of outside text, process facts."""
