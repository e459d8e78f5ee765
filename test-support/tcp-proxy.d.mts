export interface TcpProxy {
  readonly port: number
  readonly open: number
  freeze(): void
  thaw(): void
  close(): Promise<void>
}
export function tcpProxy(targetPort: number, targetHost?: string): Promise<TcpProxy>
