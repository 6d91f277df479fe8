// The last line of defence: a screen that fails to draw says so in words,
// instead of leaving a blank window, and keeps the detail for IT.
import { Component, type ReactNode } from "react";

export class CrashScreen extends Component<{ children: ReactNode }, { error: Error | null }> {
  state = { error: null as Error | null };

  static getDerivedStateFromError(error: Error) {
    return { error };
  }

  render() {
    const { error } = this.state;
    if (!error) return this.props.children;
    return (
      <div className="splash error" data-testid="crash" role="alert">
        <p>Clinic Sync could not show this screen. Your changes on this computer are kept.</p>
        <p>
          <button onClick={() => this.setState({ error: null })}>Try again</button> If it happens again, restart Clinic Sync
          and tell IT what you were doing.
        </p>
        <details>
          <summary>Details for IT</summary>
          <pre data-testid="crash-detail">{String(error.stack ?? error.message)}</pre>
        </details>
      </div>
    );
  }
}
