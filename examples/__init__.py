"""Examples of sweeps over the user's own code (README, "Your own model"); see each folder."""
