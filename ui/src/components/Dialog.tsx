// A modal confirmation: says what will happen, in words, before a change
// that is hard to take back. Focus starts on the safe choice; Esc cancels;
// Tab stays inside.
import { useEffect, useRef, type ReactNode } from "react";

export function Dialog({
  title,
  children,
  confirm,
  onConfirm,
  onCancel,
  danger = false,
  testid = "dialog",
}: {
  title: string;
  children: ReactNode;
  confirm: string;
  onConfirm: () => void;
  onCancel: () => void;
  danger?: boolean;
  testid?: string;
}) {
  const box = useRef<HTMLDivElement>(null);
  const cancel = useRef<HTMLButtonElement>(null);
  useEffect(() => {
    const previous = document.activeElement as HTMLElement | null;
    cancel.current?.focus();
    return () => previous?.focus?.();
  }, []);
  function onKeyDown(e: React.KeyboardEvent) {
    if (e.key === "Escape") {
      e.stopPropagation();
      onCancel();
    } else if (e.key === "Tab" && box.current) {
      const items = [...box.current.querySelectorAll<HTMLElement>("button, input, select, textarea")].filter((el) => !el.hasAttribute("disabled"));
      if (items.length === 0) return;
      const first = items[0];
      const last = items[items.length - 1];
      if (e.shiftKey && document.activeElement === first) {
        e.preventDefault();
        last.focus();
      } else if (!e.shiftKey && document.activeElement === last) {
        e.preventDefault();
        first.focus();
      }
    }
  }
  return (
    <div className="backdrop">
      <div ref={box} className="dialog" role="dialog" aria-modal="true" aria-labelledby={`${testid}-title`} data-testid={testid} onKeyDown={onKeyDown}>
        <h2 id={`${testid}-title`}>{title}</h2>
        {children}
        <div className="actions">
          <button ref={cancel} data-testid={`${testid}-cancel`} onClick={onCancel}>
            Cancel
          </button>
          <button className={danger ? "danger" : ""} data-testid={`${testid}-confirm`} onClick={onConfirm}>
            {confirm}
          </button>
        </div>
      </div>
    </div>
  );
}
