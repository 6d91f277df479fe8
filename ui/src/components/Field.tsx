// A labelled form field whose error sits next to it, tied to it for screen
// readers (aria-invalid, aria-describedby).
import { forwardRef, type InputHTMLAttributes } from "react";

type Props = InputHTMLAttributes<HTMLInputElement> & { label: string; name: string; error?: string; hint?: string; testid: string };

export const Field = forwardRef<HTMLInputElement, Props>(function Field({ label, name, error, hint, testid, ...input }, ref) {
  const id = `field-${testid}`;
  const described = [hint ? `${id}-hint` : "", error ? `${id}-error` : ""].filter(Boolean).join(" ") || undefined;
  return (
    <label htmlFor={id}>
      <span>{label}</span>
      <input
        ref={ref}
        id={id}
        name={name}
        data-testid={testid}
        aria-invalid={error ? true : undefined}
        aria-describedby={described}
        className={error ? "invalid" : ""}
        {...input}
      />
      {hint && (
        <span className="muted small" id={`${id}-hint`}>
          {hint}
        </span>
      )}
      {error && (
        <span className="field-error" id={`${id}-error`} data-testid={`error-${name}`} role="alert">
          {error}
        </span>
      )}
    </label>
  );
});
