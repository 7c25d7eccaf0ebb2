mod property {}
